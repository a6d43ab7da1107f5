/**
 * Reading a file for GET /files: open it once (no stat/open race), describe it, and stream it in
 * bounded chunks. Memory per download is one chunk in flight plus the socket's buffers, whatever
 * the file's size.
 */
import { constants } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
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
