/**
 * The few libc calls JavaScript has no API for, through the runtime's own FFI: `bun:ffi` on Bun,
 * `node:ffi` on Node ≥ 26.1. No native addon, nothing to build. One table of symbols serves both.
 *
 * Used for: inotify, poll, read, close, eventfd (the watch worker); prctl(PR_SET_CHILD_SUBREAPER),
 * waitid/waitpid (reaping orphans); ioctl (FIFREEZE, RNDRESEEDCRNG); sync; clock_gettime and
 * clock_settime; and, bound apart on first use, the four xattr calls (`loadXattrCalls`) and
 * malloc_trim (`loadMallocTrim`). Every caller must cope with `loadLibc()` returning undefined (FFI disabled, or no
 * libc found); `libcLoadError()` says why.
 *
 * Pointers are passed as Uint8Array buffers the caller owns for the duration of the call. `errno`
 * must be read right after the failing call, on the same thread, before anything else runs.
 */
import { createRequire } from "node:module";

export interface Libc {
  inotifyInit1(flags: number): number;
  inotifyAddWatch(fd: number, path: string, mask: number): number;
  inotifyRmWatch(fd: number, wd: number): number;
  /** poll(2) over `fds` (a `struct pollfd[]` buffer, 8 bytes each). */
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): number;
  read(fd: number, buf: Uint8Array, length: number): number;
  close(fd: number): number;
  eventfd(initval: number, flags: number): number;
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
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EINTR = 4;
export const EAGAIN = 11;

/** C types as the two FFIs name them: `buf` is a caller-owned buffer argument. */
type CType = "i32" | "u32" | "u64" | "i64" | "buf" | "ptr" | "void";

const SYMBOLS: Record<string, [args: CType[], returns: CType]> = {
  inotify_init1: [["i32"], "i32"],
  inotify_add_watch: [["i32", "buf", "u32"], "i32"],
  inotify_rm_watch: [["i32", "i32"], "i32"],
  poll: [["buf", "u64", "i32"], "i32"],
  read: [["i32", "buf", "u64"], "i64"],
  close: [["i32"], "i32"],
  eventfd: [["u32", "i32"], "i32"],
  prctl: [["i32", "u64", "u64", "u64", "u64"], "i32"],
  waitid: [["i32", "u32", "buf", "i32"], "i32"],
  waitpid: [["i32", "buf", "i32"], "i32"],
  ioctl: [["i32", "u64", "buf"], "i32"],
  sync: [[], "void"],
  clock_gettime: [["i32", "buf"], "i32"],
  clock_settime: [["i32", "buf"], "i32"],
  __errno_location: [[], "ptr"],
};

const LIBC_NAMES = ["libc.so.6", "libc.so", "/lib/ld-musl-x86_64.so.1", "/lib/ld-musl-aarch64.so.1"];

type Fn = (...args: unknown[]) => unknown;
interface Binding {
  fns: Record<string, Fn>;
  readI32(pointer: unknown): number;
}

let cached: { libc: Libc | undefined; error: string | undefined } | undefined;

/** The libc bindings, loaded once; undefined when this runtime has no usable FFI. */
export function loadLibc(): Libc | undefined {
  cached ??= tryLoad();
  return cached.libc;
}

/** Why `loadLibc()` returned undefined (for logs and error messages). */
export function libcLoadError(): string | undefined {
  loadLibc();
  return cached?.error;
}

function tryLoad(): { libc: Libc | undefined; error: string | undefined } {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  let lastError = "no libc found";
  for (const name of LIBC_NAMES) {
    try {
      return { libc: wrap(isBun ? bindBun(name) : bindNode(name)), error: undefined };
    } catch (err) {
      lastError = `${isBun ? "bun:ffi" : "node:ffi"}: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return { libc: undefined, error: lastError };
}

const require = createRequire(import.meta.url);
const cstr = (s: string) => Buffer.from(`${s}\0`);

function wrap({ fns, readI32 }: Binding): Libc {
  const call = (name: string, ...args: unknown[]) => Number((fns[name] as Fn)(...args));
  return {
    inotifyInit1: (flags) => call("inotify_init1", flags),
    inotifyAddWatch: (fd, path, mask) => call("inotify_add_watch", fd, cstr(path), mask >>> 0),
    inotifyRmWatch: (fd, wd) => call("inotify_rm_watch", fd, wd),
    poll: (fds, nfds, timeoutMs) => call("poll", fds, BigInt(nfds), timeoutMs),
    read: (fd, buf, length) => call("read", fd, buf, BigInt(length)),
    close: (fd) => call("close", fd),
    eventfd: (initval, flags) => call("eventfd", initval, flags),
    prctl: (option, arg2) => call("prctl", option, BigInt(arg2), 0n, 0n, 0n),
    waitid: (idtype, id, siginfo, options) => call("waitid", idtype, id, siginfo, options),
    waitpid: (pid, status, options) => call("waitpid", pid, status, options),
    ioctl: (fd, request, arg) => call("ioctl", fd, BigInt(request), arg),
    sync: () => void (fns.sync as Fn)(),
    clockGettime: (clockid, ts) => call("clock_gettime", clockid, ts),
    clockSettime: (clockid, ts) => call("clock_settime", clockid, ts),
    errno: () => readI32((fns.__errno_location as Fn)()),
  };
}

interface BunFfi {
  dlopen(path: string, defs: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, Fn> };
  read: { i32(ptr: unknown, offset: number): number };
}

function bindBun(path: string, symbols = SYMBOLS): Binding {
  const ffi = require("bun:ffi") as BunFfi;
  const name = (t: CType) => (t === "buf" ? "ptr" : t);
  const defs = Object.fromEntries(
    Object.entries(symbols).map(([sym, [args, ret]]) => [sym, { args: args.map(name), returns: name(ret) }]),
  );
  return { fns: ffi.dlopen(path, defs).symbols, readI32: (p) => ffi.read.i32(p, 0) };
}

interface NodeFfi {
  dlopen(path: string, defs: Record<string, { arguments: string[]; return: string }>): { functions: Record<string, Fn> };
  getInt32(pointer: bigint, offset?: number): number;
}

function bindNode(path: string, symbols = SYMBOLS): Binding {
  const ffi = requireNodeFfi();
  const name = (t: CType) => (t === "buf" ? "buffer" : t === "ptr" ? "pointer" : t);
  const defs = Object.fromEntries(
    Object.entries(symbols).map(([sym, [args, ret]]) => [sym, { arguments: args.map(name), return: name(ret) }]),
  );
  return { fns: ffi.dlopen(path, defs).functions, readI32: (p) => ffi.getInt32(p as bigint, 0) };
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

/**
 * glibc's `malloc_trim(0)` (gives freed heap pages back to the kernel), or undefined where it does
 * not exist (musl) or there is no FFI. Bound on its own so its absence never costs the main table.
 */
export function loadMallocTrim(): (() => void) | undefined {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  try {
    if (isBun) {
      const ffi = require("bun:ffi") as BunFfi;
      const { symbols } = ffi.dlopen("libc.so.6", { malloc_trim: { args: ["u64"], returns: "i32" } });
      return () => void (symbols.malloc_trim as Fn)(0n);
    }
    const ffi = requireNodeFfi();
    const { functions } = ffi.dlopen("libc.so.6", { malloc_trim: { arguments: ["u64"], return: "i32" } });
    return () => void (functions.malloc_trim as Fn)(0n);
  } catch {
    return undefined;
  }
}

/**
 * The four extended-attribute calls (fs/xattr.ts), with the path as a C string. Each returns what
 * libc returns (-1 on failure, then read `errno()` at once). Sizes are byte counts of `buf`.
 */
export interface XattrCalls {
  /** listxattr(path, buf, size): the NUL-separated names; with size 0, the size they need. */
  listxattr(path: Uint8Array, buf: Uint8Array, size: number): number;
  /** getxattr(path, name, buf, size): the value's length; with size 0, the size it needs. */
  getxattr(path: Uint8Array, name: Uint8Array, buf: Uint8Array, size: number): number;
  setxattr(path: Uint8Array, name: Uint8Array, value: Uint8Array, size: number, flags: number): number;
  removexattr(path: Uint8Array, name: Uint8Array): number;
  errno(): number;
}

export const ENODATA = 61;
export const ERANGE = 34;

const XATTR_SYMBOLS: Record<string, [args: CType[], returns: CType]> = {
  listxattr: [["buf", "buf", "u64"], "i64"],
  getxattr: [["buf", "buf", "buf", "u64"], "i64"],
  setxattr: [["buf", "buf", "buf", "u64", "i32"], "i32"],
  removexattr: [["buf", "buf"], "i32"],
  __errno_location: [[], "ptr"],
};

let xattrCached: { calls: XattrCalls | undefined; error: string | undefined } | undefined;

/**
 * The xattr calls, bound on the first metadata read or write (not at start: most daemons never
 * touch metadata); undefined when this runtime has no usable FFI (`xattrLoadError()` says why).
 */
export function loadXattrCalls(): XattrCalls | undefined {
  xattrCached ??= tryLoadXattr();
  return xattrCached.calls;
}

export function xattrLoadError(): string | undefined {
  loadXattrCalls();
  return xattrCached?.error;
}

function tryLoadXattr(): { calls: XattrCalls | undefined; error: string | undefined } {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  let lastError = "no libc found";
  for (const name of LIBC_NAMES) {
    try {
      const { fns, readI32 } = isBun ? bindBun(name, XATTR_SYMBOLS) : bindNode(name, XATTR_SYMBOLS);
      const f = fns as Record<"listxattr" | "getxattr" | "setxattr" | "removexattr" | "__errno_location", Fn>;
      return {
        calls: {
          listxattr: (path, buf, size) => Number(f.listxattr(path, buf, BigInt(size))),
          getxattr: (path, name, buf, size) => Number(f.getxattr(path, name, buf, BigInt(size))),
          setxattr: (path, name, value, size, flags) => Number(f.setxattr(path, name, value, BigInt(size), flags)),
          removexattr: (path, name) => Number(f.removexattr(path, name)),
          errno: () => readI32(f.__errno_location()),
        },
        error: undefined,
      };
    } catch (err) {
      lastError = `${isBun ? "bun:ffi" : "node:ffi"}: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return { calls: undefined, error: lastError };
}

/**
 * `madvise(addr, length, advice)` with the address as a plain integer (the daemon's own mappings,
 * from /proc/self/maps, for POST /collapse), or undefined without FFI. Returns 0 or -1. Bound on
 * first use, on its own, so the main table does not depend on it.
 */
export function loadMadvise(): ((addr: bigint, length: bigint, advice: number) => number) | undefined {
  madviseFn ??= bindMadvise();
  return madviseFn === null ? undefined : madviseFn;
}

let madviseFn: ((addr: bigint, length: bigint, advice: number) => number) | null | undefined;

const MADVISE_SYMBOLS: Record<string, [args: CType[], returns: CType]> = { madvise: [["u64", "u64", "i32"], "i32"] };

function bindMadvise(): ((addr: bigint, length: bigint, advice: number) => number) | null {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  for (const name of LIBC_NAMES) {
    try {
      const { fns } = isBun ? bindBun(name, MADVISE_SYMBOLS) : bindNode(name, MADVISE_SYMBOLS);
      const madvise = fns.madvise as Fn;
      return (addr, length, advice) => Number(madvise(addr, length, advice));
    } catch {
      // the next name
    }
  }
  return null;
}
