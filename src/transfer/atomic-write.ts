/**
 * Writes one uploaded file: streamed into a temporary file beside the target, renamed over it
 * only when complete. Whatever goes wrong (client gone, bad gzip, bad multipart, full disk)
 * the target keeps its old content (or stays absent) and the temporary file is removed.
 *
 * The new file belongs to the requesting user. Its mode is 0666 minus the daemon's umask, or,
 * when it replaces a regular file, that file's permission bits (an uploaded-over script stays
 * executable, as it did when Go envd truncated in place). Metadata (`user.e2b.*`) is set on the
 * temporary file, so it appears together with the content.
 *
 * Memory per upload is bounded: chunks are written as they arrive, in batches of at most
 * WRITE_BATCH_BYTES, and the source is not read while a write is pending (backpressure).
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, rename, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import { type Metadata, writeMetadata } from "../fs/xattr.ts";
import { ensureDirs, type Owner } from "../fs/make-dir.ts";
import { ownTempFiles, UPLOAD_TEMP_PREFIX } from "../fs/own-temp-files.ts";
import { resolveWriteTarget } from "./dirs.ts";
import { noteTransferred } from "./gc-pacer.ts";

export const WRITE_BATCH_BYTES = 256 << 10;

export interface AtomicWriteOptions {
  owner: Owner;
  /** Replaces the file's whole `user.e2b.*` set; undefined or {} leaves none. */
  metadata?: Metadata | undefined;
  /** Aborts the write (client gone, shutdown): the temporary file is removed. */
  signal: AbortSignal;
  /** The request's declared length, for the "attempted to write N bytes" message on ENOSPC. */
  declaredBytes?: number | undefined;
  /** When set, a source that ends with any other byte count is refused (a truncated body). */
  expectedBytes?: number | undefined;
  /** The temporary file's path; default: a hidden random name in the target's directory. */
  tempPath?: string | undefined;
  /** Called when metadata could not be stored because the filesystem has no xattrs. */
  onMetadataUnsupported?: (path: string) => void;
}

export interface AtomicWriteResult {
  /** Where the content landed (the symlink target when `target` was a link). */
  path: string;
  bytes: number;
}

export async function writeFileAtomically(
  target: string,
  source: AsyncIterable<Uint8Array>,
  options: AtomicWriteOptions,
): Promise<AtomicWriteResult> {
  const { owner, signal } = options;
  signal.throwIfAborted();
  const finalPath = await resolveWriteTarget(target);
  const dir = dirname(finalPath);
  await ensureDirs(dir, owner);

  let keepMode: number | undefined;
  try {
    const st = await stat(finalPath);
    if (st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path is a directory: ${target}`);
    if (!st.isFile()) throw new EnvdError(Code.InvalidArgument, `path is not a regular file: ${target}`);
    keepMode = st.mode & 0o777;
  } catch (err) {
    if (err instanceof EnvdError) throw err;
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw fromNodeError(err, `error getting file info of '${target}'`);
  }

  const tempPath = options.tempPath ?? join(dir, `${UPLOAD_TEMP_PREFIX}${randomBytes(8).toString("hex")}`);
  // Watchers, ListDir and Stat never see this name; a crash's leftover is swept at the next start.
  const own = ownTempFiles.register(tempPath, keepMode !== undefined);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o666);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOSPC") {
      throw new EnvdError(Code.ResourceExhausted, `not enough inodes available: ${(err as Error).message}`, {
        cause: err,
        httpStatus: 507,
      });
    }
    ownTempFiles.release(own);
    throw fromNodeError(err, `error opening file '${target}'`);
  }

  let committed = false;
  let bytes = 0;
  try {
    await handle.chown(owner.uid, owner.gid);
    if (keepMode !== undefined) await handle.chmod(keepMode);
    bytes = await copyInto(handle, source, signal);
    if (options.expectedBytes !== undefined && bytes !== options.expectedBytes) {
      throw new EnvdError(Code.InvalidArgument, `request body ended after ${bytes} of ${options.expectedBytes} bytes`);
    }
    const h = handle;
    handle = undefined;
    await h.close();
    if (options.metadata !== undefined && Object.keys(options.metadata).length > 0) {
      const stored = await writeMetadata(tempPath, options.metadata);
      if (!stored) options.onMetadataUnsupported?.(target);
    }
    signal.throwIfAborted();
    own.bytes = bytes;
    await rename(tempPath, finalPath);
    committed = true;
    return { path: finalPath, bytes };
  } catch (err) {
    throw mapWriteError(err, target, options.declaredBytes);
  } finally {
    if (handle) await handle.close().catch(() => {});
    if (!committed) await unlink(tempPath).catch(() => {});
    ownTempFiles.release(own);
  }
}

/** Copies the source into the file; returns the byte count. */
async function copyInto(handle: FileHandle, source: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<number> {
  let total = 0;
  let batch: Uint8Array[] = [];
  let batchBytes = 0;
  const flush = async () => {
    let pending = batch;
    batch = [];
    batchBytes = 0;
    while (pending.length > 0) {
      const { bytesWritten } = await handle.writev(pending);
      pending = dropWritten(pending, bytesWritten);
    }
  };
  // The source may wait for a client that sends nothing more: an abort (shutdown, client gone)
  // must not wait for it, or the temporary file would outlive the daemon.
  const it = source[Symbol.asyncIterator]();
  let stop: ((reason: unknown) => void) | undefined;
  const onAbort = () => stop?.(signal.reason);
  signal.addEventListener("abort", onAbort);
  try {
    for (;;) {
      signal.throwIfAborted();
      const next = await new Promise<IteratorResult<Uint8Array>>((resolve, reject) => {
        stop = reject;
        it.next().then(resolve, reject);
      });
      stop = undefined;
      if (next.done) break;
      const chunk = next.value;
      signal.throwIfAborted();
      if (chunk.length === 0) continue;
      batch.push(chunk);
      batchBytes += chunk.length;
      total += chunk.length;
      if (batchBytes >= WRITE_BATCH_BYTES) await flush();
      noteTransferred(chunk.length);
    }
  } catch (err) {
    void it.return?.()?.catch(() => {});
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  signal.throwIfAborted();
  await flush();
  return total;
}

/** The buffers still to write after a short writev. */
function dropWritten(buffers: Uint8Array[], written: number): Uint8Array[] {
  let n = written;
  let i = 0;
  while (i < buffers.length && n >= (buffers[i] as Uint8Array).length) {
    n -= (buffers[i] as Uint8Array).length;
    i++;
  }
  const rest = buffers.slice(i);
  if (n > 0 && rest.length > 0) rest[0] = (rest[0] as Uint8Array).subarray(n);
  return rest;
}

function mapWriteError(err: unknown, target: string, declaredBytes: number | undefined): unknown {
  if (err instanceof EnvdError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    const what = (err as NodeJS.ErrnoException).syscall?.includes("xattr")
      ? "not enough space for file metadata"
      : declaredBytes !== undefined && declaredBytes > 0
        ? `attempted to write ${declaredBytes} bytes: not enough disk space available`
        : "not enough disk space available";
    return new EnvdError(Code.ResourceExhausted, what, { cause: err, httpStatus: 507 });
  }
  if (code === "EISDIR") return new EnvdError(Code.InvalidArgument, `path is a directory: ${target}`, { cause: err });
  // Filesystem failures carry the syscall; anything else (the source's own error, an abort) is
  // the caller's to classify.
  if ((err as NodeJS.ErrnoException | undefined)?.syscall !== undefined) return fromNodeError(err, `error writing file '${target}'`);
  return err;
}

/** True for names this module creates (so listings or sweeps can recognise leftovers). */
export function isUploadTempName(name: string): boolean {
  return name.startsWith(UPLOAD_TEMP_PREFIX);
}
