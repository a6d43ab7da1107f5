/**
 * Reading a file for GET /files: open it once (no stat/open race), describe it, and stream it in
 * bounded chunks. Memory per download is one or two chunks plus the socket's buffers, whatever
 * the file's size.
 */
import { constants } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import type { Writable } from "node:stream";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import { waitForDrain } from "../sys/wait-drain.ts";
import { noteTransferred } from "./gc-pacer.ts";
import { makeEtag } from "./preconditions.ts";

export const READ_CHUNK_BYTES = 256 << 10;

export interface OpenedFile extends AsyncDisposable {
  handle: FileHandle;
  /** Size from fstat. 0 for procfs/sysfs files too, whose real length is only known by reading. */
  size: number;
  mtimeMs: number;
  etag: string;
}

/**
 * Opens `path` for reading. Missing → NotFound (404) `path '…' does not exist`; directory →
 * InvalidArgument (400) `path '…' is a directory`; FIFOs, sockets and devices → 400 (reading
 * them could block forever or never end). The open is non-blocking so a FIFO cannot hang it.
 */
export async function openForDownload(path: string): Promise<OpenedFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new EnvdError(Code.NotFound, `path '${path}' does not exist`, { cause: err });
    if (code === "ENXIO") throw new EnvdError(Code.InvalidArgument, `path '${path}' is not a regular file`, { cause: err });
    throw withStatus500(fromNodeError(err, `error opening file '${path}'`));
  }
  try {
    const st = await handle.stat({ bigint: true });
    if (st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path '${path}' is a directory`);
    if (!st.isFile()) throw new EnvdError(Code.InvalidArgument, `path '${path}' is not a regular file`);
    return {
      handle,
      size: Number(st.size),
      mtimeMs: Number(st.mtimeNs / 1_000_000n),
      etag: makeEtag(st.ino, st.size, st.mtimeNs),
      [Symbol.asyncDispose]: () => handle.close().catch(() => {}),
    };
  } catch (err) {
    await handle.close().catch(() => {});
    throw err instanceof EnvdError ? err : withStatus500(fromNodeError(err, `error checking file '${path}'`));
  }
}

/**
 * The bytes of [start, end] (inclusive), or from `start` to EOF when `end` is undefined, in
 * chunks of at most READ_CHUNK_BYTES. Each chunk is a fresh buffer (the consumer may hold it).
 * Stops early at EOF (a file that shrank yields fewer bytes; the response then ends short).
 */
export async function* readChunks(handle: FileHandle, start: number, end?: number): AsyncGenerator<Buffer> {
  let position = start;
  for (;;) {
    const want = end === undefined ? READ_CHUNK_BYTES : Math.min(READ_CHUNK_BYTES, end + 1 - position);
    if (want <= 0) return;
    const buffer = Buffer.allocUnsafe(want);
    const { bytesRead } = await handle.read(buffer, 0, want, position);
    if (bytesRead === 0) return;
    position += bytesRead;
    noteTransferred(bytesRead);
    yield bytesRead === want ? buffer : buffer.subarray(0, bytesRead);
  }
}

/**
 * Writes the bytes of [start, end] (inclusive) to `out`, reusing its read buffers, and returns how
 * many it wrote (fewer when the file shrank: the body then ends short). A buffer goes back to the
 * pool only when `out`'s write callback fires: neither runtime copies a written buffer before that
 * (Node's sockets and Bun's HTTP/1.1 and HTTP/2 responses keep a reference, and reusing it any
 * earlier corrupts the body; download.test.ts checks both). With the wait for "drain" that makes
 * one or two buffers per download, where fresh ones cost a 256 KiB allocation per read and made
 * the GC pacer force a full collection every 32 MiB (0.3 CPU-s per GiB on Bun; docs/benchmarks.md).
 * Rejects with the abort reason on `signal`, and when `out` closes or fails before the end.
 */
export async function writeRange(handle: FileHandle, out: Writable, start: number, end: number, signal: AbortSignal): Promise<number> {
  const pool: Buffer[] = [];
  // An "error" while no drain is awaited (a failed write reports through its callback and the
  // event) must not go unheard: an unheard "error" event kills the process. The listener stays
  // for the response's life, so a late one after we return is heard too.
  const failures: unknown[] = [];
  out.on("error", (err: unknown) => {
    if (failures.length === 0) failures.push(err);
  });
  let position = start;
  while (position <= end) {
    signal.throwIfAborted();
    if (failures.length > 0) throw failures[0];
    const want = Math.min(READ_CHUNK_BYTES, end + 1 - position);
    const buffer = pool.pop() ?? Buffer.allocUnsafe(READ_CHUNK_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, want, position);
    if (failures.length > 0) throw failures[0];
    if (bytesRead === 0) break;
    position += bytesRead;
    const written = out.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), (err) => {
      if (!err) pool.push(buffer);
    });
    // A failed write also closes `out`: report the failure, not the close.
    if (!written) await waitForDrain(out, signal, responseClosed).catch((err: unknown) => Promise.reject(failures.length > 0 ? failures[0] : err));
  }
  if (failures.length > 0) throw failures[0];
  // Aborted during the last read (the response closed): the caller must not end or await it.
  signal.throwIfAborted();
  return position - start;
}

const responseClosed = () => new Error("the response closed before the body was written");

/**
 * For a file whose fstat size is 0: the first chunk, or undefined when it is really empty.
 * Lets `/proc/meminfo` be downloaded (streamed to EOF) while an empty file still answers
 * `Content-Length: 0`, which the e2b SDK relies on.
 */
export async function probeUnsized(handle: FileHandle): Promise<Buffer | undefined> {
  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK_BYTES, 0);
  return bytesRead === 0 ? undefined : buffer.subarray(0, bytesRead);
}

/** Unexpected filesystem errors on the download path are 500s, as in Go envd. */
function withStatus500(err: EnvdError): EnvdError {
  return new EnvdError(err.code, err.rawMessage, { cause: err.cause, httpStatus: err.httpStatus ?? 500 });
}
