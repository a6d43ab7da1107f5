/**
 * GET /files: download (docs/protocol.md §4.3). Ranges, conditional requests and gzip; the domain work
 * is in ../transfer, this file picks statuses and headers and streams the file with backpressure.
 */
import { basename } from "node:path";
import type { Writable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { Code, EnvdError } from "../errors.ts";
import { resolvePath } from "../fs/paths.ts";
import { isIdentityRefused, negotiateEncoding } from "../transfer/accept-encoding.ts";
import { chooseGzip, GZIP_LEVEL } from "../transfer/download-encoding.ts";
import { contentDisposition } from "../transfer/content-disposition.ts";
import { contentTypeOf } from "../transfer/content-type.ts";
import { type OpenedFile, openForDownload, probeUnsized, readChunks, writeRange } from "../transfer/download.ts";
import { decideRange, evaluatePreconditions, ifRangeAllows } from "../transfer/preconditions.ts";
import { authorize, type FilesDeps } from "./files-auth.ts";
import { header } from "./headers.ts";
import type { RouteContext, RouteHandler } from "./router.ts";


export function getFiles(deps: FilesDeps): RouteHandler {
  return async (ctx) => {
    const { req, res, url } = ctx;
    const { user, path } = authorize(deps, ctx, "read");
    const resolved = resolvePath(path ?? "", user.home, deps.session.defaultWorkdir);
    await using file = await openForDownload(resolved);

    const acceptEncoding = header(req, "accept-encoding");
    let encoding = negotiateEncoding(acceptEncoding);
    const conditional = ["range", "if-modified-since", "if-none-match", "if-range", "if-match", "if-unmodified-since"].some(
      (h) => header(req, h) !== undefined,
    );
    // Range and conditional requests are answered unencoded (so 206/304 keep their meaning).
    if (conditional) encoding = isIdentityRefused(acceptEncoding) ? null : "identity";
    if (encoding === null) {
      throw new EnvdError(Code.InvalidArgument, "no acceptable encoding found, supported: [identity, gzip]", { httpStatus: 406 });
    }
    // gzip only when it pays (docs/compatibility.md, "Download compression"): honoured when asked
    // for alone, skipped for data that does not shrink and for large files merely offered it.
    if (encoding === "gzip") {
      encoding = await chooseGzip(acceptEncoding ?? "", {
        path: resolved,
        size: file.size,
        readStart: async (bytes) => {
          const buffer = Buffer.allocUnsafe(bytes);
          const { bytesRead } = await file.handle.read(buffer, 0, bytes, 0);
          return buffer.subarray(0, bytesRead);
        },
      });
    }

    res.setHeader("Vary", "Accept-Encoding");
    const head = req.method === "HEAD";
    const describe = () => {
      res.setHeader("Content-Disposition", contentDisposition(basename(resolved)));
      res.setHeader("Content-Type", contentTypeOf(url.searchParams.get("path") ?? resolved));
      res.setHeader("Last-Modified", new Date(file.mtimeMs).toUTCString());
    };

    if (encoding === "gzip") {
      describe();
      res.setHeader("Content-Encoding", "gzip");
      res.statusCode = 200;
      if (head) return void res.end();
      return await send(deps, ctx, resolved, [readChunks(file.handle, 0), createGzip({ level: GZIP_LEVEL })]);
    }

    const precondition = evaluatePreconditions(
      {
        ifMatch: header(req, "if-match"),
        ifNoneMatch: header(req, "if-none-match"),
        ifModifiedSince: header(req, "if-modified-since"),
        ifUnmodifiedSince: header(req, "if-unmodified-since"),
      },
      file,
    );
    if (precondition === 304) {
      res.setHeader("ETag", file.etag);
      res.setHeader("Last-Modified", new Date(file.mtimeMs).toUTCString());
      res.statusCode = 304;
      return void res.end();
    }
    if (precondition === 412) throw new EnvdError(Code.FailedPrecondition, "precondition failed", { httpStatus: 412 });

    if (file.size === 0) {
      describe();
      return await sendUnsized(deps, ctx, resolved, file, head);
    }

    const rangeHeader = header(req, "range");
    const range =
      rangeHeader !== undefined && ifRangeAllows(header(req, "if-range"), file)
        ? decideRange(rangeHeader, file.size)
        : { kind: "full" as const };
    if (range.kind === "unsatisfiable") {
      res.setHeader("Content-Range", `bytes */${file.size}`);
      throw new EnvdError(Code.OutOfRange, `requested range not satisfiable: ${rangeHeader} (file size ${file.size})`, {
        httpStatus: 416,
      });
    }
    describe();
    res.setHeader("ETag", file.etag);
    res.setHeader("Accept-Ranges", "bytes");
    const [start, end] = range.kind === "partial" ? [range.start, range.end] : [0, file.size - 1];
    if (range.kind === "partial") {
      res.statusCode = 206;
      res.setHeader("Content-Range", `bytes ${start}-${end}/${file.size}`);
    } else res.statusCode = 200;
    res.setHeader("Content-Length", end - start + 1);
    if (head) return void res.end();
    try {
      const written = await writeRange(file.handle, res as Writable, start, end, ctx.signal);
      if (written !== end - start + 1) {
        // The file shrank: ending now would leave an HTTP/1.1 client waiting for the promised
        // length (and misreading the next response), and an HTTP/2 client taking a short body as
        // whole. Cutting the connection (HTTP/2: resetting the stream with an error) tells it.
        deps.log.warn("file shrank during the download; connection cut", { path: resolved, sent: written, promised: end - start + 1 });
        return void res.destroy(new Error("the file shrank during the download"));
      }
      res.end();
      await finished(res as Writable);
    } catch (err) {
      failedAfterHeaders(deps, ctx, resolved, err);
    }
  };
}

/** A regular file that stats as empty: really empty (Content-Length 0), or procfs-like (streamed to EOF). */
async function sendUnsized(deps: FilesDeps, ctx: RouteContext, path: string, file: OpenedFile, head: boolean): Promise<void> {
  const { res } = ctx;
  const first = await probeUnsized(file.handle);
  res.statusCode = 200;
  if (first === undefined) {
    res.setHeader("Content-Length", 0);
    return void res.end();
  }
  if (head) return void res.end();
  async function* all() {
    yield first as Buffer;
    yield* readChunks(file.handle, (first as Buffer).length);
  }
  return send(deps, ctx, path, [all()]);
}

/** Streams the body; failures after the headers went out can only cut the connection. */
async function send(
  deps: FilesDeps,
  ctx: RouteContext,
  path: string,
  stages: [AsyncIterable<Buffer>, ...NodeJS.ReadWriteStream[]],
): Promise<void> {
  try {
    await (pipeline as (...streams: unknown[]) => Promise<void>)(...stages, ctx.res, { signal: ctx.signal });
  } catch (err) {
    failedAfterHeaders(deps, ctx, path, err);
  }
}

/**
 * A body that failed after the headers went out: only cutting the connection tells the client,
 * with an error (an HTTP/2 stream destroyed without one is reset with NO_ERROR, which a client
 * takes for a complete body). Also when the signal aborted: the client left, or the daemon is
 * shutting down, and the response must not keep its connection busy until the shutdown's drain
 * gives up on it.
 */
function failedAfterHeaders(deps: FilesDeps, ctx: RouteContext, path: string, err: unknown): void {
  if (ctx.signal.aborted) deps.log.debug("download cut short", { path, err });
  else deps.log.warn("download failed after the headers were sent", { path, err });
  ctx.res.destroy(err instanceof Error ? err : new Error(String(err)));
}
