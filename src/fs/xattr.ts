/**
 * User metadata on files, stored as `user.e2b.<key>` extended attributes (protocol.md §3.2, §4.4).
 *
 * Neither Node nor Bun exposes the xattr syscalls, so this goes through `@napi-rs/xattr`, an
 * N-API addon with prebuilt binaries that loads under both runtimes. Its errors carry only a
 * message ending in `(os error N)`; `xattrError` turns them back into errno-coded errors that
 * `fromNodeError` understands.
 *
 * Shared by the upload path (`/files` `X-Metadata-*` headers) and EntryInfo (`metadata`).
 * Calls follow symlinks, like Go's getxattr/setxattr.
 */
import { constants } from "node:os";
import { Code, EnvdError } from "../errors.ts";

type XattrAddon = typeof import("@napi-rs/xattr");
let addon: Promise<XattrAddon | undefined> | undefined;
/** Why the addon could not be loaded, if it could not. */
export let xattrUnavailableReason: string | undefined;

/**
 * The addon, loaded on first use. A compiled binary extracts it to a temporary directory, which
 * can be missing, full or noexec: then metadata is treated as unsupported (as on a filesystem
 * without xattrs) instead of the daemon failing to start.
 */
function loadAddon(): Promise<XattrAddon | undefined> {
  addon ??= import("@napi-rs/xattr").then(
    (m) => m,
    (err: unknown) => {
      xattrUnavailableReason = err instanceof Error ? err.message : String(err);
      return undefined;
    },
  );
  return addon;
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
  const x = await loadAddon();
  if (!x) return undefined;
  let names: string[];
  try {
    names = await x.listAttributes(path);
  } catch (err) {
    const e = xattrError(err, "listxattr", path);
    if (isUnsupported(e)) return undefined;
    throw e;
  }
  let out: Metadata | undefined;
  for (const name of names) {
    if (!name.startsWith(METADATA_XATTR_PREFIX)) continue;
    let value: Buffer | null;
    try {
      value = await x.getAttribute(path, name);
    } catch (err) {
      const e = xattrError(err, "getxattr", path);
      if (e.code === "ENODATA") continue; // removed in between
      throw e;
    }
    if (value === null) continue;
    let text: string;
    try {
      text = UTF8.decode(value);
    } catch {
      continue;
    }
    out ??= {};
    out[name.slice(METADATA_XATTR_PREFIX.length)] = text;
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
  const x = await loadAddon();
  if (!x) return false;
  let existing: string[];
  try {
    existing = await x.listAttributes(path);
  } catch (err) {
    const e = xattrError(err, "listxattr", path);
    if (isUnsupported(e)) return false;
    throw e;
  }
  for (const name of existing) {
    if (!name.startsWith(METADATA_XATTR_PREFIX)) continue;
    if (Object.hasOwn(metadata, name.slice(METADATA_XATTR_PREFIX.length))) continue;
    try {
      await x.removeAttribute(path, name);
    } catch (err) {
      const e = xattrError(err, "removexattr", path);
      if (e.code !== "ENODATA") throw e;
    }
  }
  for (const [key, value] of Object.entries(metadata)) {
    try {
      await x.setAttribute(path, METADATA_XATTR_PREFIX + key, value);
    } catch (err) {
      const e = xattrError(err, "setxattr", path);
      if (isUnsupported(e)) return false;
      throw e;
    }
  }
  return true;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** Turns the addon's `… (os error N)` failure into an Error with `code`/`errno` like node:fs errors. */
export function xattrError(err: unknown, syscall: string, path: string): NodeJS.ErrnoException {
  const message = (err as Error | undefined)?.message ?? String(err);
  const m = /\(os error (\d+)\)\s*$/.exec(message);
  const errno = m ? Number(m[1]) : undefined;
  const code = errno === undefined ? undefined : ERRNO_NAMES.get(errno);
  const e: NodeJS.ErrnoException = new Error(`${syscall} '${path}': ${message}`, { cause: err });
  if (code !== undefined) e.code = code;
  if (errno !== undefined) e.errno = -errno;
  e.syscall = syscall;
  e.path = path;
  return e;
}

function isUnsupported(err: NodeJS.ErrnoException): boolean {
  return err.code === "ENOTSUP" || err.code === "EOPNOTSUPP";
}
