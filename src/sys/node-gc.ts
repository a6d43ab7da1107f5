/**
 * V8's `gc` on Node, exposed at run time: `--expose-gc` set through node:v8, then `gc` taken from a
 * fresh vm context (the flag only affects contexts created after it is set). Both builtins are
 * loaded here, on first use, not imported at start. Undefined on Bun or when it cannot be had.
 */
export type NodeGc = (options: { type: "minor" | "major" }) => void;

export function exposeNodeGc(): NodeGc | undefined {
  if (typeof (globalThis as { Bun?: unknown }).Bun !== "undefined") return undefined;
  try {
    process.getBuiltinModule("node:v8").setFlagsFromString("--expose-gc");
    const gc = process.getBuiltinModule("node:vm").runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as NodeGc) : undefined;
  } catch {
    return undefined;
  }
}
