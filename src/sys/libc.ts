/**
 * The few libc calls JavaScript has no API for, through the runtime's own FFI: `bun:ffi` on Bun,
 * `node:ffi` on Node ≥ 26.1. No native addon, nothing to build.
 *
 * Used for: prctl(PR_SET_CHILD_SUBREAPER), waitid/waitpid (reaping orphans), ioctl (FIFREEZE,
 * RNDRESEEDCRNG), sync, clock_gettime/clock_settime (PTP clock). Every caller must cope with
 * `loadLibc()` returning undefined (FFI disabled with `--no-experimental-ffi`, or no libc found).
 *
 * Pointers are passed as Uint8Array buffers the caller owns for the duration of the call.
 */
import { createRequire } from "node:module";

export interface Libc {
  prctl(option: number, arg2: number): number;
  /** waitid(idtype, id, &siginfo, options); `siginfo` must hold 128 bytes. */
  waitid(idtype: number, id: number, siginfo: Uint8Array, options: number): number;
  /** waitpid(pid, &status, options); `status` must hold 4 bytes. */
  waitpid(pid: number, status: Uint8Array, options: number): number;
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  sync(): void;
  /** `ts` holds a struct timespec (16 bytes: tv_sec i64, tv_nsec i64). */
  clockGettime(clockid: number, ts: Uint8Array): number;
  clockSettime(clockid: number, ts: Uint8Array): number;
  /** errno of the last failed call, best effort (Node's runtime may clobber it: 0 then). */
  errno(): number;
}

export const P_ALL = 0;
export const P_PID = 1;
export const WNOHANG = 1;
export const WEXITED = 4;
export const WNOWAIT = 0x0100_0000;
export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_GET_CHILD_SUBREAPER = 37;
export const CLOCK_REALTIME = 0;

const LIBC_NAMES = ["libc.so.6", "libc.so", "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1"];

type Loader = () => Libc;
let cached: { libc: Libc | undefined; error: string | undefined } | undefined;

/** The libc bindings, loaded once; undefined when this runtime has no usable FFI. */
export function loadLibc(): Libc | undefined {
  cached ??= tryLoad();
  return cached.libc;
}

/** Why `loadLibc()` returned undefined (for logs). */
export function libcLoadError(): string | undefined {
  loadLibc();
  return cached?.error;
}

function tryLoad(): { libc: Libc | undefined; error: string | undefined } {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  let lastError = "no libc found";
  for (const name of LIBC_NAMES) {
    try {
      const loader: Loader = isBun ? () => loadBun(name) : () => loadNode(name);
      return { libc: loader(), error: undefined };
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
  }
  return { libc: undefined, error: lastError };
}

const require = createRequire(import.meta.url);

interface BunFfi {
  dlopen(path: string, defs: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  read: { i32(ptr: unknown, offset: number): number };
}

function loadBun(path: string): Libc {
  const ffi = require("bun:ffi") as BunFfi;
  const s = ffi.dlopen(path, {
    prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
    waitid: { args: ["i32", "u32", "ptr", "i32"], returns: "i32" },
    waitpid: { args: ["i32", "ptr", "i32"], returns: "i32" },
    ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
    sync: { args: [], returns: "void" },
    clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
    clock_settime: { args: ["i32", "ptr"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
  }).symbols as Record<string, (...a: unknown[]) => number>;
  const f = (name: string) => s[name] as (...a: unknown[]) => number;
  return {
    prctl: (option, arg2) => f("prctl")(option, BigInt(arg2), 0n, 0n, 0n),
    waitid: (idtype, id, siginfo, options) => f("waitid")(idtype, id, siginfo, options),
    waitpid: (pid, status, options) => f("waitpid")(pid, status, options),
    ioctl: (fd, request, arg) => f("ioctl")(fd, BigInt(request), arg),
    sync: () => void f("sync")(),
    clockGettime: (clockid, ts) => f("clock_gettime")(clockid, ts),
    clockSettime: (clockid, ts) => f("clock_settime")(clockid, ts),
    errno: () => ffi.read.i32(f("__errno_location")(), 0),
  };
}

interface NodeFfi {
  dlopen(path: string, defs: Record<string, { arguments: string[]; return: string }>): {
    functions: Record<string, (...a: unknown[]) => unknown>;
  };
  getInt32(pointer: bigint, offset?: number): number;
}

function loadNode(path: string): Libc {
  const ffi = requireNodeFfi();
  const s = ffi.dlopen(path, {
    prctl: { arguments: ["i32", "u64", "u64", "u64", "u64"], return: "i32" },
    waitid: { arguments: ["i32", "u32", "buffer", "i32"], return: "i32" },
    waitpid: { arguments: ["i32", "buffer", "i32"], return: "i32" },
    ioctl: { arguments: ["i32", "u64", "buffer"], return: "i32" },
    sync: { arguments: [], return: "void" },
    clock_gettime: { arguments: ["i32", "buffer"], return: "i32" },
    clock_settime: { arguments: ["i32", "buffer"], return: "i32" },
    __errno_location: { arguments: [], return: "pointer" },
  }).functions;
  const f = (name: string) => s[name] as (...a: unknown[]) => number;
  return {
    prctl: (option, arg2) => f("prctl")(option, BigInt(arg2), 0n, 0n, 0n),
    waitid: (idtype, id, siginfo, options) => f("waitid")(idtype, id, siginfo, options),
    waitpid: (pid, status, options) => f("waitpid")(pid, status, options),
    ioctl: (fd, request, arg) => f("ioctl")(fd, BigInt(request), arg),
    sync: () => void f("sync")(),
    clockGettime: (clockid, ts) => f("clock_gettime")(clockid, ts),
    clockSettime: (clockid, ts) => f("clock_settime")(clockid, ts),
    errno: () => ffi.getInt32((s.__errno_location as () => bigint)(), 0),
  };
}

/** `node:ffi` without its one-time ExperimentalWarning on stderr (the daemon's logs are JSON). */
function requireNodeFfi(): NodeFfi {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === "string" ? warning : warning.message;
    if (text.includes("FFI")) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return require("node:ffi") as NodeFfi;
  } finally {
    process.emitWarning = emit;
  }
}
