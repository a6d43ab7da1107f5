/**
 * The memory protection configured on the daemon's own cgroup chain, for the `X-Envd-Memory`
 * header of every /init answer (E2B envd ≥ 0.9.0; docs/compatibility.md, "Newer E2B envd routes and headers").
 *
 *  - `request`: memory.min of the daemon's own cgroup;
 *  - `low`: memory.low of the daemon's own cgroup;
 *  - `floor`: the smallest memory.min on the chain below the root, the daemon's own included
 *    (protection is granted top-down, so one unprotected ancestor leaves the daemon unprotected);
 *  - `partial`: some value could not be read (it counts as 0). Zeros with `partial:false` are a
 *    chain that is really unprotected (the daemon sits in the root cgroup).
 *
 * "max" (systemd's MemoryMin=infinity) reads as 2^63−1, the largest value the orchestrator's
 * int64 decoder accepts. Values are bigints and the JSON is written by hand, because a JavaScript
 * number cannot hold 2^63−1 exactly. Reading never fails: it is a report, not a decision.
 */
import { readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";

export interface MemoryProtection {
  request: bigint;
  low: bigint;
  floor: bigint;
  partial: boolean;
}

/** What "max" reads as (Go's math.MaxInt64). */
export const MEMORY_UNBOUNDED = (1n << 63n) - 1n;

const UNREADABLE: MemoryProtection = { request: 0n, low: 0n, floor: 0n, partial: true };

/**
 * Walks from `selfDir` up to `root`, reading memory.min at every level below the root and
 * memory.low of `selfDir`. `root` undefined (no usable cgroup v2) or `selfDir` undefined or outside
 * `root` → zeros with `partial: true`; `selfDir` equal to `root` → zeros, `partial: false`.
 */
export function readMemoryProtection(
  root: string | undefined,
  selfDir: string | undefined,
  readFile: (path: string) => string = (p) => readFileSync(p, "utf8"),
): MemoryProtection {
  if (root === undefined || selfDir === undefined) return { ...UNREADABLE };
  const rel = relative(root, selfDir);
  if (rel === ".." || rel.startsWith(`..${sep}`) || rel.startsWith(sep)) return { ...UNREADABLE };
  if (rel === "") return { request: 0n, low: 0n, floor: 0n, partial: false };
  const result: MemoryProtection = { request: 0n, low: 0n, floor: 0n, partial: false };
  let level = root;
  let first = true;
  for (const part of rel.split(sep)) {
    level = join(level, part);
    const min = readValue(join(level, "memory.min"), readFile);
    if (min === undefined) result.partial = true;
    const v = min ?? 0n;
    if (first || v < result.floor) result.floor = v;
    first = false;
    result.request = v; // the last level is the daemon's own
  }
  const low = readValue(join(selfDir, "memory.low"), readFile);
  if (low === undefined) result.partial = true;
  result.low = low ?? 0n;
  return result;
}

function readValue(path: string, readFile: (path: string) => string): bigint | undefined {
  let text: string;
  try {
    text = readFile(path).trim();
  } catch {
    return undefined;
  }
  if (text === "max") return MEMORY_UNBOUNDED;
  return /^\d+$/.test(text) ? BigInt(text) : undefined;
}

/** The header value: `{"request":…,"low":…,"floor":…,"partial":…}`, numbers in bytes, exact. */
export function memoryHeaderValue(p: MemoryProtection): string {
  return `{"request":${p.request},"low":${p.low},"floor":${p.floor},"partial":${p.partial}}`;
}

/** The daemon's own cgroup under `root`: `root` joined with the `0::` line of /proc/self/cgroup. */
export function selfCgroupUnder(root: string, procSelfCgroup: string): string | undefined {
  const path = /^0::(\/.*)$/m.exec(procSelfCgroup)?.[1];
  if (path === undefined) return undefined;
  return path === "/" ? root : join(root, path);
}

/** Reads the daemon's chain now (a handful of small cgroupfs reads). */
export function readOwnMemoryProtection(root: string | undefined): MemoryProtection {
  if (root === undefined) return { ...UNREADABLE };
  let procSelfCgroup: string;
  try {
    procSelfCgroup = readFileSync("/proc/self/cgroup", "utf8");
  } catch {
    return { ...UNREADABLE };
  }
  return readMemoryProtection(root, selfCgroupUnder(root, procSelfCgroup));
}
