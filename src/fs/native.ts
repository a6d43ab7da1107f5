/**
 * The few libc calls the runtimes do not expose (inotify, poll, eventfd), through the runtime's
 * own FFI: `bun:ffi` under Bun, `node:ffi` under Node (≥ 26.1, on by default in 26). Only the
 * watch worker thread and the watch engine use it.
 *
 * `errno` is read right after the failing call, on the same thread, before anything else runs.
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
  errno(): number;
}

export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EINTR = 4;
export const EAGAIN = 11;

const require = createRequire(import.meta.url);
const isBun = typeof process.versions.bun === "string";

let cached: Libc | Error | undefined;

/** libc through FFI, or an Error saying why it is unavailable (cached either way). */
export function loadLibc(): Libc | Error {
  cached ??= tryLoad();
  return cached;
}

function tryLoad(): Libc | Error {
  try {
    return isBun ? loadBun() : loadNode();
  } catch (err) {
    return new Error(`native calls unavailable (${isBun ? "bun:ffi" : "node:ffi"}): ${(err as Error).message}`, { cause: err });
  }
}

const cstr = (s: string) => Buffer.from(`${s}\0`);

interface BunFfi {
  dlopen(path: string, defs: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  read: { i32(ptr: unknown, offset: number): number };
}

function loadBun(): Libc {
  const ffi = require("bun:ffi") as BunFfi;
  const defs = {
    inotify_init1: { args: ["i32"], returns: "i32" },
    inotify_add_watch: { args: ["i32", "ptr", "u32"], returns: "i32" },
    inotify_rm_watch: { args: ["i32", "i32"], returns: "i32" },
    poll: { args: ["ptr", "u64", "i32"], returns: "i32" },
    read: { args: ["i32", "ptr", "u64"], returns: "i64" },
    close: { args: ["i32"], returns: "i32" },
    eventfd: { args: ["u32", "i32"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
  };
  let lib: ReturnType<BunFfi["dlopen"]> | undefined;
  let last: unknown;
  for (const name of ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc.so"]) {
    try {
      lib = ffi.dlopen(name, defs);
      break;
    } catch (err) {
      last = err;
    }
  }
  if (!lib) throw last instanceof Error ? last : new Error("libc not found");
  const f = lib.symbols as Record<string, (...a: unknown[]) => unknown>;
  const call = (name: string, ...args: unknown[]) => Number((f[name] as (...a: unknown[]) => unknown)(...args));
  return {
    inotifyInit1: (flags) => call("inotify_init1", flags),
    inotifyAddWatch: (fd, path, mask) => call("inotify_add_watch", fd, cstr(path), mask >>> 0),
    inotifyRmWatch: (fd, wd) => call("inotify_rm_watch", fd, wd),
    poll: (fds, nfds, timeoutMs) => call("poll", fds, nfds, timeoutMs),
    read: (fd, buf, length) => call("read", fd, buf, length),
    close: (fd) => call("close", fd),
    eventfd: (initval, flags) => call("eventfd", initval, flags),
    errno: () => ffi.read.i32((f.__errno_location as () => unknown)(), 0),
  };
}

function loadNode(): Libc {
  const ffi = require("node:ffi") as typeof import("node:ffi");
  const { functions: f } = ffi.dlopen(null, {
    inotify_init1: { arguments: ["i32"], return: "i32" },
    inotify_add_watch: { arguments: ["i32", "pointer", "u32"], return: "i32" },
    inotify_rm_watch: { arguments: ["i32", "i32"], return: "i32" },
    poll: { arguments: ["pointer", "u64", "i32"], return: "i32" },
    read: { arguments: ["i32", "pointer", "u64"], return: "i64" },
    close: { arguments: ["i32"], return: "i32" },
    eventfd: { arguments: ["u32", "i32"], return: "i32" },
    __errno_location: { arguments: [], return: "pointer" },
  });
  return {
    inotifyInit1: (flags) => f.inotify_init1(flags),
    inotifyAddWatch: (fd, path, mask) => f.inotify_add_watch(fd, cstr(path), mask >>> 0),
    inotifyRmWatch: (fd, wd) => f.inotify_rm_watch(fd, wd),
    poll: (fds, nfds, timeoutMs) => f.poll(fds, BigInt(nfds), timeoutMs),
    read: (fd, buf, length) => Number(f.read(fd, buf, BigInt(length))),
    close: (fd) => f.close(fd),
    eventfd: (initval, flags) => f.eventfd(initval, flags),
    errno: () => ffi.getInt32(f.__errno_location(), 0),
  };
}
