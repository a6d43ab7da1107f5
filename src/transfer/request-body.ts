/**
 * Moving a request body into the upload code with backpressure, and getting rid of what an
 * upload leaves unread. The HTTP handlers (http/post-files*.ts) only call these.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { PassThrough, type Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { Code, EnvdError } from "../errors.ts";

/** An HTTP/1 or HTTP/2 request, as node:http and node:http2 hand them over. */
export type BodyRequest = IncomingMessage | Http2ServerRequest;

/** See requestBody: Bun needs the socket paused for request backpressure. */
const PAUSE_SOCKET = process.versions.bun !== undefined;
/** After an upload, at most this much of an unread body is drained so the client gets the answer. */
const DRAIN_MAX_BYTES = 64 << 20;

/**
 * The request body, gunzipped when asked, as a stream of our own piped from the request: ending
 * our iteration early (a failed write) must not destroy the request, whose socket still has to
 * carry the error response. Errors of the request itself reach the returned stream. Call
 * `releaseRequestBody` when the upload is over, however it ended.
 */
export function requestBody(req: BodyRequest, gzip: boolean): Readable {
  const raw = req as unknown as Readable;
  const out = gzip ? createGunzip() : new PassThrough({ highWaterMark: 256 << 10 });
  raw.on("error", (err) => out.destroy(err));
  if (!PAUSE_SOCKET) {
    raw.pipe(out);
    return out;
  }
  // Bun 1.4: for connections handed to node:http by our protocol sniffer (server.ts),
  // req.pause() does not stop reading the socket, so a fast client could fill our memory with
  // the whole body. Pausing the socket itself restores backpressure (measured: 1 GiB upload,
  // +900 MiB → under 64 MiB). Only HTTP/1: an HTTP/2 socket carries other streams, and HTTP/2
  // has its own flow control.
  const socket = req.httpVersionMajor === 1 ? (req.socket as Readable | null) : null;
  let socketPaused = false;
  const resume = () => {
    if (socketPaused) socket?.resume();
    socketPaused = false;
    raw.resume();
  };
  raw.on("data", (chunk: Buffer) => {
    if (out.write(chunk)) return;
    raw.pause();
    if (socket && !socketPaused) {
      socket.pause();
      socketPaused = true;
    }
    out.once("drain", resume);
  });
  raw.on("end", () => out.end());
  // However the upload ends (a parser that stopped early never drains `out`), the socket must
  // not stay paused: the next request on this keep-alive connection would never be read.
  releaseBody.set(req, () => {
    out.off("drain", resume);
    if (socketPaused) socket?.resume();
    socketPaused = false;
  });
  return out;
}

/** Per request: undoes what requestBody paused (see there). */
const releaseBody = new WeakMap<BodyRequest, () => void>();

/** Undoes what `requestBody` paused on this request's socket; a no-op when nothing was. */
export function releaseRequestBody(req: BodyRequest): void {
  releaseBody.get(req)?.();
}

/** Re-throws a body stream's failure as what it means for the client. */
export async function* sourceErrors(
  source: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
  what: "gzip" | "multipart" | "raw",
): AsyncGenerator<Uint8Array> {
  try {
    yield* source;
  } catch (err) {
    if (err instanceof EnvdError) throw err;
    if (signal.aborted) throw new EnvdError(Code.Canceled, "the client went away during the upload", { cause: err });
    const code = (err as NodeJS.ErrnoException).code ?? "";
    const message = (err as Error).message;
    if (what === "gzip" && code.startsWith("Z_")) {
      throw new EnvdError(Code.InvalidArgument, `error decompressing request body: ${message}`, { cause: err });
    }
    if (what === "multipart") throw new EnvdError(Code.InvalidArgument, `error reading multipart form: ${message}`, { cause: err });
    throw new EnvdError(Code.InvalidArgument, `error reading the request body: ${message}`, { cause: err });
  }
}

/**
 * After an upload: stop feeding parsers and read (and discard) what the client still sends, so
 * it can read our answer instead of hitting a reset. A client that keeps sending past
 * DRAIN_MAX_BYTES is cut off. Nothing to do when the body was read to its end.
 */
export function drain(req: BodyRequest): void {
  const r = req as unknown as Readable;
  if (r.readableEnded || r.destroyed) return;
  r.unpipe();
  r.removeAllListeners("data");
  if (PAUSE_SOCKET && req.httpVersionMajor === 1) (req.socket as Readable | null)?.resume();
  let seen = 0;
  r.on("data", (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > DRAIN_MAX_BYTES) r.destroy();
  });
  r.resume();
}

/** The whole body, up to `maxBytes` (413 beyond). */
export async function readBody(req: BodyRequest, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new EnvdError(Code.InvalidArgument, `request body larger than ${maxBytes} bytes`, { httpStatus: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}
