/**
 * User metadata on files, stored as `user.e2b.<key>` extended attributes (docs/protocol.md §3.2, §4.4).
 *
 * Neither Node nor Bun exposes the xattr syscalls, so this calls libc's listxattr, getxattr,
 * setxattr and removexattr through the runtime's FFI (sys/libc.ts, bound on first use): no native
 * addon to ship or unpack. Each call is one short synchronous syscall on the event loop (a few
 * microseconds on a local filesystem). Failures become errno-coded errors (`code`, `errno`,
 * `syscall`, `path`, like node:fs errors) that `fromNodeError` understands.
 *
 * Shared by the upload path (`/files` `X-Metadata-*` headers) and EntryInfo (`metadata`).
 * Calls follow symlinks, like Go's getxattr/setxattr.
 */
import { constants } from "node:os";
import { Code, EnvdError } from "../errors.ts";
import { ENODATA, ERANGE, loadXattrCalls, type XattrCalls, xattrLoadError } from "../sys/libc.ts";

/** Why metadata is unavailable (no usable FFI), if it is. */
export function xattrUnavailableReason(): string | undefined {
  return xattrLoadError();
}

export const METADATA_XATTR_PREFIX = "user.e2b.";
/** Linux caps xattr names at 255 bytes; the prefix takes 9. */
export const METADATA_KEY_MAX_BYTES = 255 - METADATA_XATTR_PREFIX.length;
/** Σ(prefix + key + value) over a file's metadata: stays inside one ext4 inode's xattr budget. */
export const METADATA_TOTAL_MAX_BYTES = 4096;

export type Metadata = Record<string, string>;

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Checks keys and values as E2B envd does: printable ASCII (0x20–0x7E), non-empty keys of at
 * most 246 bytes, and a total of at most 4096 bytes counting the prefix once per key.
 * Throws InvalidArgument (HTTP 400) naming the first offending key.
 */
export function validateMetadata(metadata: Metadata): void {
  let total = 0;
  for (const [key, value] of Object.entries(metadata)) {
    if (key === "") throw new EnvdError(Code.InvalidArgument, "invalid metadata: empty key");
    if (!PRINTABLE_ASCII.test(key)) {
      throw new EnvdError(Code.InvalidArgument, `invalid metadata key ${JSON.stringify(key)}: only printable ASCII (0x20-0x7E) is allowed`);
    }
    if (key.length > METADATA_KEY_MAX_BYTES) {
      throw new EnvdError(Code.InvalidArgument, `invalid metadata key ${JSON.stringify(key)}: longer than ${METADATA_KEY_MAX_BYTES} bytes`);
    }
    if (!PRINTABLE_ASCII.test(value)) {
      throw new EnvdError(Code.InvalidArgument, `invalid metadata value for key ${JSON.stringify(key)}: only printable ASCII (0x20-0x7E) is allowed`);
    }
    total += METADATA_XATTR_PREFIX.length + key.length + value.length;
  }
  if (total > METADATA_TOTAL_MAX_BYTES) {
    throw new EnvdError(Code.InvalidArgument, `invalid metadata: ${total} bytes in total, more than ${METADATA_TOTAL_MAX_BYTES}`);
  }
}

/**
 * The file's `user.e2b.*` attributes without the prefix, or undefined when it has none or the
 * filesystem has no xattr support. Values that are not valid UTF-8 are skipped (as Go does).
 * Other failures (ENOENT, EACCES…) are thrown as errno-coded errors.
 */
export async function readMetadata(path: string): Promise<Metadata | undefined> {
  const x = loadXattrCalls();
  if (!x) return undefined;
  const cpath = cString(path);
  let names: Buffer[];
  try {
    names = listNames(x, cpath, path);
  } catch (err) {
    if (isUnsupported(err as NodeJS.ErrnoException)) return undefined;
    throw err;
  }
  let out: Metadata | undefined;
  for (const name of names) {
    if (!hasPrefix(name)) continue;
    const value = getValue(x, cpath, name, path);
    if (value === undefined) continue; // removed in between
    let text: string;
    let key: string;
    try {
      text = UTF8.decode(value);
      key = UTF8.decode(name.subarray(PREFIX_BYTES.length, name.length - 1));
    } catch {
      continue;
    }
    out ??= {};
    out[key] = text;
  }
  return out;
}

/**
 * Makes the file's `user.e2b.*` set exactly `metadata`: keys not in it are removed, so an
 * empty object clears everything. Validates first. Returns false (and changes nothing) when the
 * filesystem has no xattr support; throws errno-coded errors otherwise (ENOSPC/EDQUOT → 507
 * through `fromNodeError`).
 */
export async function writeMetadata(path: string, metadata: Metadata): Promise<boolean> {
  validateMetadata(metadata);
  const x = loadXattrCalls();
  if (!x) return false;
  const cpath = cString(path);
  let existing: Buffer[];
  try {
    existing = listNames(x, cpath, path);
  } catch (err) {
    if (isUnsupported(err as NodeJS.ErrnoException)) return false;
    throw err;
  }
  for (const name of existing) {
    if (!hasPrefix(name)) continue;
    // Keys are validated printable ASCII, so a name that is not ASCII is never kept.
    if (Object.hasOwn(metadata, name.subarray(PREFIX_BYTES.length, name.length - 1).toString("latin1"))) continue;
    if (x.removexattr(cpath, name) < 0) {
      const errno = x.errno();
      if (errno !== ENODATA) throw errnoError(errno, "removexattr", path);
    }
  }
  for (const [key, value] of Object.entries(metadata)) {
    const v = Buffer.from(value, "latin1");
    if (x.setxattr(cpath, cString(METADATA_XATTR_PREFIX + key), v, v.length, 0) < 0) {
      const e = errnoError(x.errno(), "setxattr", path);
      if (isUnsupported(e)) return false;
      throw e;
    }
  }
  return true;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });
const PREFIX_BYTES = Buffer.from(METADATA_XATTR_PREFIX);
const EMPTY = Buffer.alloc(0);
/** First guess for a name list or a value: all of a file's metadata fits in 4 KiB. */
const FIRST_BUFFER_BYTES = 4096;

/** A NUL-terminated copy of `s`. A NUL inside would silently cut the path short: refused, as node:fs does. */
function cString(s: string): Buffer {
  if (s.includes("\0")) {
    const e: NodeJS.ErrnoException = new TypeError(`path must not contain null bytes: ${JSON.stringify(s)}`);
    e.code = "ERR_INVALID_ARG_VALUE";
    throw e;
  }
  return Buffer.from(`${s}\0`);
}

const hasPrefix = (name: Buffer) => name.length > PREFIX_BYTES.length && PREFIX_BYTES.equals(name.subarray(0, PREFIX_BYTES.length));

/** The attribute names of `cpath`, each NUL-terminated (ready to pass back to libc). */
function listNames(x: XattrCalls, cpath: Buffer, path: string): Buffer[] {
  let size = FIRST_BUFFER_BYTES;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = x.listxattr(cpath, buf, size);
    if (n >= 0) {
      const names: Buffer[] = [];
      let start = 0;
      for (let i = 0; i < n; i++) {
        if (buf[i] !== 0) continue;
        if (i > start) names.push(Buffer.from(buf.subarray(start, i + 1)));
        start = i + 1;
      }
      return names;
    }
    const errno = x.errno();
    if (errno !== ERANGE) throw errnoError(errno, "listxattr", path);
    // The list grew past the buffer: ask for its size now and try again.
    const need = x.listxattr(cpath, EMPTY, 0);
    if (need < 0) throw errnoError(x.errno(), "listxattr", path);
    size = Math.max(need, size * 2);
  }
}

/** One attribute's value, or undefined when it no longer exists (ENODATA). */
function getValue(x: XattrCalls, cpath: Buffer, name: Buffer, path: string): Buffer | undefined {
  let size = FIRST_BUFFER_BYTES;
  for (;;) {
    const buf = Buffer.allocUnsafe(size);
    const n = x.getxattr(cpath, name, buf, size);
    if (n >= 0) return buf.subarray(0, n);
    const errno = x.errno();
    if (errno === ENODATA) return undefined;
    if (errno !== ERANGE) throw errnoError(errno, "getxattr", path);
    const need = x.getxattr(cpath, name, EMPTY, 0);
    if (need < 0) {
      const again = x.errno();
      if (again === ENODATA) return undefined;
      throw errnoError(again, "getxattr", path);
    }
    size = Math.max(need, size * 2);
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** An Error with `code`/`errno`/`syscall`/`path` like node:fs errors, for a failed xattr call. */
export function errnoError(errno: number, syscall: string, path: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno);
  const e: NodeJS.ErrnoException = new Error(`${code ?? `errno ${errno}`}: ${syscall} '${path}'`);
  if (code !== undefined) e.code = code;
  if (errno !== 0) e.errno = -errno;
  e.syscall = syscall;
  e.path = path;
  return e;
}

function isUnsupported(err: NodeJS.ErrnoException): boolean {
  return err.code === "ENOTSUP" || err.code === "EOPNOTSUPP";
}
