import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { EnvdError, fromNodeError } from "./errors.ts";
import { createLogger } from "./log.ts";

function logOnce(fields: Record<string, unknown>): Record<string, unknown> {
  const lines: string[] = [];
  createLogger("debug", (l) => lines.push(l)).error("failed", fields);
  return JSON.parse(lines[0] as string) as Record<string, unknown>;
}

test("an Error in a log line carries message, code, errno, syscall, path and its cause chain", () => {
  const errno = Object.assign(new Error("EIO: i/o error, write"), { code: "EIO", errno: -5, syscall: "write", path: "/data/f" });
  const wrapped = fromNodeError(errno, "error writing file '/data/f'");
  const rec = logOnce({ err: wrapped });
  assert.deepEqual(rec.err, {
    message: "error writing file '/data/f': EIO: i/o error, write",
    name: "ConnectError",
    code: "internal",
    cause: { message: "EIO: i/o error, write", code: "EIO", errno: -5, syscall: "write", path: "/data/f" },
  });
});

test("a non-Error cause and a deep chain stay bounded", () => {
  let err: Error = new Error("root", { cause: "a string cause" });
  for (let i = 0; i < 10; i++) err = new Error(`level ${i}`, { cause: err });
  const rec = logOnce({ err });
  let depth = 0;
  for (let e = rec.err as Record<string, unknown> | undefined; e && typeof e === "object"; e = e.cause as Record<string, unknown>) depth++;
  assert.equal(depth, 5);
  assert.equal((logOnce({ err: new EnvdError(Code.NotFound, "x", { cause: 42 }) }).err as Record<string, unknown>).cause, "42");
});

test("a line that would be too long keeps the error, shortened, rather than dropping it", () => {
  const cause = Object.assign(new Error("x".repeat(3000)), { code: "ENOSPC", syscall: "write" });
  const err = new ConnectError("y".repeat(3000), Code.Internal, undefined, undefined, cause);
  const others = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`other${i}`, "z".repeat(3000)]));
  const rec = logOnce({ err, ...others });
  assert.equal(rec.truncated, true);
  const e = rec.err as Record<string, unknown>;
  assert.equal(e.code, "internal");
  assert.equal((e.cause as Record<string, unknown>).syscall, "write");
});
