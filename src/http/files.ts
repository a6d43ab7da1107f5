/**
 * GET /files (download), POST /files (upload) and POST /files/compose (protocol.md §4.3–4.5).
 *
 * GET and POST /files pass the access-token gate and check the token header or a signed URL
 * themselves (§5.2); compose is behind the gate. The user is the `username` query value (or
 * JSON field), else the session's default user; an unknown user is 401.
 *
 * The domain work is in ../transfer: this file reads the request, picks statuses and headers,
 * and moves bytes between the socket and the file with backpressure in both directions.
 */
import { basename, extname } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants as zlibConstants, createGunzip, createGzip } from "node:zlib";
import { Code, EnvdError } from "../errors.ts";
import { resolvePath } from "../fs/paths.ts";
import { type Metadata, readMetadata, validateMetadata } from "../fs/xattr.ts";
import type { Logger } from "../log.ts";
import { isIdentityRefused, negotiateEncoding } from "../transfer/accept-encoding.ts";
import { writeFileAtomically } from "../transfer/atomic-write.ts";
import { composeFiles } from "../transfer/compose.ts";
import { contentDisposition } from "../transfer/content-disposition.ts";
import { type OpenedFile, openForDownload, probeUnsized, readChunks } from "../transfer/download.ts";
import { multipartParts } from "../transfer/multipart.ts";
import { decideRange, evaluatePreconditions, ifRangeAllows } from "../transfer/preconditions.ts";
import { checkSigning, parseExpiration, type SigningOperation } from "../transfer/signing.ts";
import type { User, UserDb } from "../users/user-db.ts";
import type { Session } from "../session.ts";
import { writeJson } from "./respond.ts";
import type { AnyRequest, RouteContext, RouteHandler } from "./router.ts";

export interface FilesDeps {
  session: Session;
  users: UserDb;
  log: Logger;
}

/**
 * Fastest zlib level: every fetch-based client (the e2b SDK included) offers gzip by default, so
 * this runs on most downloads; level 1 still shrinks text several times at a fraction of the
 * CPU of the default level 6 (measured in docs/architecture.md).
 */
const GZIP_LEVEL = zlibConstants.Z_BEST_SPEED;
/** See requestBody: Bun needs the socket paused for request backpressure. */
const PAUSE_SOCKET = process.versions.bun !== undefined;
/** Largest /files/compose JSON body. */
const COMPOSE_BODY_MAX_BYTES = 1 << 20;
/** After an upload, at most this much of an unread body is drained so the client gets the answer. */
const DRAIN_MAX_BYTES = 64 << 20;

interface UploadEntry {
  path: string;
  name: string;
  type: "file";
  metadata?: Metadata;
}

// ---------------------------------------------------------------------------------------------
// GET /files

export function getFiles(deps: FilesDeps): RouteHandler {
  return async (ctx) => {
    const { req, res, url } = ctx;
    const { user, path } = authorize(deps, ctx, "read");
    const resolved = resolvePath(path ?? "", user.home, deps.session.defaultWorkdir);
    await using file = await openForDownload(resolved);

    const acceptEncoding = headerOf(req, "accept-encoding");
    let encoding = negotiateEncoding(acceptEncoding);
    const conditional = ["range", "if-modified-since", "if-none-match", "if-range", "if-match", "if-unmodified-since"].some(
      (h) => headerOf(req, h) !== undefined,
    );
    // Range and conditional requests are answered unencoded (so 206/304 keep their meaning).
    if (conditional) encoding = isIdentityRefused(acceptEncoding) ? null : "identity";
    if (encoding === null) {
      throw new EnvdError(Code.InvalidArgument, "no acceptable encoding found, supported: [identity, gzip]", { httpStatus: 406 });
    }

    res.setHeader("Vary", "Accept-Encoding");
    const head = req.method === "HEAD";
    const mime = await loadMime();
    const describe = () => {
      res.setHeader("Content-Disposition", contentDisposition(basename(resolved)));
      res.setHeader("Content-Type", contentTypeOf(mime, url.searchParams.get("path") ?? resolved));
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
        ifMatch: headerOf(req, "if-match"),
        ifNoneMatch: headerOf(req, "if-none-match"),
        ifModifiedSince: headerOf(req, "if-modified-since"),
        ifUnmodifiedSince: headerOf(req, "if-unmodified-since"),
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

    const rangeHeader = headerOf(req, "range");
    const range =
      rangeHeader !== undefined && ifRangeAllows(headerOf(req, "if-range"), file)
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
    return await send(deps, ctx, resolved, [readChunks(file.handle, start, end)]);
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
    if (ctx.signal.aborted) {
      deps.log.debug("download cut short by the client", { path, err });
      return;
    }
    deps.log.warn("download failed after the headers were sent", { path, err });
    ctx.res.destroy();
  }
}

type Mime = typeof import("mime-types");
let mimeTypes: Promise<Mime> | undefined;
/** mime-types builds its tables when loaded (~11 % of the daemon's start): load it on the first download. */
function loadMime(): Promise<Mime> {
  mimeTypes ??= import("mime-types").then((m) => (m as { default?: Mime }).default ?? m);
  return mimeTypes;
}

function contentTypeOf(mime: Mime, path: string): string {
  const ext = extname(path);
  return (ext && mime.contentType(ext)) || "application/octet-stream";
}

// ---------------------------------------------------------------------------------------------
// POST /files

export function postFiles(deps: FilesDeps): RouteHandler {
  return async (ctx) => {
    const { req } = ctx;
    try {
      writeJson(ctx.res, 200, await upload(deps, ctx));
    } finally {
      // Success or not, whatever the client still sends (an epilogue after the last multipart
      // boundary, or the rest of a failed upload) is read and dropped, so the connection can
      // carry the response and the next request.
      releaseBody.get(req)?.();
      drain(req);
    }
  };
}

async function upload(deps: FilesDeps, ctx: RouteContext): Promise<UploadEntry[]> {
  const { req, signal } = ctx;
  const { user, path } = authorize(deps, ctx, "write");
  const metadata = metadataFromHeaders(req.rawHeaders);
  if (metadata) validateMetadata(metadata);

  const contentEncoding = (headerOf(req, "content-encoding") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (contentEncoding !== "" && contentEncoding !== "identity" && contentEncoding !== "gzip" && contentEncoding !== "x-gzip") {
    throw new EnvdError(Code.InvalidArgument, `unsupported Content-Encoding: ${contentEncoding}, supported: [identity, gzip]`);
  }
  const gzip = contentEncoding === "gzip" || contentEncoding === "x-gzip";
  const contentType = headerOf(req, "content-type") ?? "";
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  const isRaw = mediaType === "application/octet-stream";
  if (!isRaw && !mediaType.startsWith("multipart/")) {
    throw new EnvdError(
      Code.InvalidArgument,
      `unsupported content type: ${contentType || "(none)"}, expected multipart/form-data or application/octet-stream`,
    );
  }

  const body = requestBody(req, gzip);
  const owner = { uid: user.uid, gid: user.gid };
  const declared = Number(headerOf(req, "content-length"));
  const declaredBytes = Number.isFinite(declared) && declared >= 0 ? declared : undefined;
  const writeOptions = {
    owner,
    metadata,
    signal,
    declaredBytes,
    onMetadataUnsupported: (p: string) => deps.log.warn("filesystem has no xattr support: metadata not stored", { path: p }),
  };
  const entryFor = async (target: string): Promise<UploadEntry> => {
    const entry: UploadEntry = { path: target, name: basename(target), type: "file" };
    const stored = await readMetadata(target).catch(() => undefined);
    if (stored) entry.metadata = stored;
    return entry;
  };

  if (isRaw) {
    if (path === undefined) throw new EnvdError(Code.InvalidArgument, "path query parameter is required for raw body upload");
    const target = resolvePath(path, user.home, deps.session.defaultWorkdir);
    const { bytes } = await writeFileAtomically(target, sourceErrors(body, signal, gzip ? "gzip" : "raw"), {
      ...writeOptions,
      // A raw, unencoded body must be exactly as long as declared: a short one is a lost client.
      expectedBytes: gzip ? undefined : declaredBytes,
    });
    deps.log.debug("file written", { path: target, bytes, user: user.name });
    return [await entryFor(target)];
  }

  const entries: UploadEntry[] = [];
  for await (const part of multipartParts(body, { headers: { ...req.headers, "content-type": contentType }, signal })) {
    if (part.name !== "file") {
      if (part.kind === "file") part.stream.resume();
      continue;
    }
    const given = path ?? (part.kind === "file" ? part.filename : undefined);
    if (given === undefined || given === "") {
      if (part.kind === "file") part.stream.resume();
      throw new EnvdError(Code.InvalidArgument, "part 'file' has no filename and no path query parameter was given");
    }
    const target = resolvePath(given, user.home, deps.session.defaultWorkdir);
    if (entries.some((e) => e.path === target)) {
      const others = entries.map((e) => e.path).filter((p) => p !== target);
      let message = `you cannot upload multiple files to the same path '${target}' in one upload request, only the first specified file was uploaded`;
      if (others.length > 0) message += `, also the following files were uploaded: ${others.join(", ")}`;
      throw new EnvdError(Code.InvalidArgument, message);
    }
    let source: AsyncIterable<Uint8Array>;
    if (part.kind === "file") source = sourceErrors(part.stream, signal, gzip ? "gzip" : "multipart");
    else {
      if (part.truncated) {
        throw new EnvdError(Code.InvalidArgument, "part 'file' without a filename is larger than 1 MiB: send it as a file part (with a filename)");
      }
      const value = part.value;
      source = (async function* () {
        yield value;
      })();
    }
    const { bytes } = await writeFileAtomically(target, source, writeOptions);
    deps.log.debug("file written", { path: target, bytes, user: user.name });
    entries.push(await entryFor(target));
  }
  return entries;
}

/**
 * The request body, gunzipped when asked, as a stream of our own piped from the request: ending
 * our iteration early (a failed write) must not destroy the request, whose socket still has to
 * carry the error response. Errors of the request itself reach the returned stream.
 */
function requestBody(req: AnyRequest, gzip: boolean): Readable {
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
const releaseBody = new WeakMap<AnyRequest, () => void>();

/** Re-throws a body stream's failure as what it means for the client. */
async function* sourceErrors(source: AsyncIterable<Uint8Array>, signal: AbortSignal, what: "gzip" | "multipart" | "raw"): AsyncGenerator<Uint8Array> {
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
 * `X-Metadata-<key>` request headers as metadata: key lower-cased, first value wins, empty keys
 * dropped. Read from rawHeaders because req.headers joins repeated values with ", ".
 */
export function metadataFromHeaders(rawHeaders: readonly string[]): Metadata | undefined {
  let out: Metadata | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!name.startsWith("x-metadata-")) continue;
    const key = name.slice("x-metadata-".length);
    if (key === "") continue;
    out ??= {};
    if (!Object.hasOwn(out, key)) out[key] = rawHeaders[i + 1] as string;
  }
  return out;
}

/**
 * After an upload: stop feeding parsers and read (and discard) what the client still sends, so
 * it can read our answer instead of hitting a reset. A client that keeps sending past
 * DRAIN_MAX_BYTES is cut off. Nothing to do when the body was read to its end.
 */
function drain(req: AnyRequest): void {
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

// ---------------------------------------------------------------------------------------------
// POST /files/compose

export function postFilesCompose(deps: FilesDeps): RouteHandler {
  return async (ctx) => {
    const { req, res, signal } = ctx;
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req, COMPOSE_BODY_MAX_BYTES)).toString("utf8"));
    } catch (err) {
      drain(req);
      throw err instanceof EnvdError ? err : new EnvdError(Code.InvalidArgument, `invalid request body: ${(err as Error).message}`);
    }
    const { sourcePaths, destination, username } = parseComposeBody(body);
    const user = lookupUser(deps, username);
    const resolvedDestination = resolvePath(destination, user.home, deps.session.defaultWorkdir);
    const sources = sourcePaths.map((given) => ({ given, resolved: resolvePath(given, user.home, deps.session.defaultWorkdir) }));
    const bytes = await composeFiles(sources, resolvedDestination, { owner: { uid: user.uid, gid: user.gid }, signal });
    deps.log.debug("files composed", { path: resolvedDestination, sources: sources.length, bytes });
    writeJson(res, 200, { path: resolvedDestination, name: basename(resolvedDestination), type: "file" });
  };
}

function parseComposeBody(body: unknown): { sourcePaths: string[]; destination: string; username: string | undefined } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new EnvdError(Code.InvalidArgument, "invalid request body: expected a JSON object");
  }
  const b = body as Record<string, unknown>;
  const sources = b.source_paths;
  if (sources !== undefined && sources !== null && (!Array.isArray(sources) || sources.some((s) => typeof s !== "string"))) {
    throw new EnvdError(Code.InvalidArgument, "invalid request body: source_paths must be an array of strings");
  }
  if (b.destination !== undefined && b.destination !== null && typeof b.destination !== "string") {
    throw new EnvdError(Code.InvalidArgument, "invalid request body: destination must be a string");
  }
  if (b.username !== undefined && b.username !== null && typeof b.username !== "string") {
    throw new EnvdError(Code.InvalidArgument, "invalid request body: username must be a string");
  }
  const sourcePaths = (sources ?? []) as string[];
  if (sourcePaths.length === 0) throw new EnvdError(Code.InvalidArgument, "source_paths must not be empty");
  const destination = (b.destination ?? "") as string;
  if (destination === "") throw new EnvdError(Code.InvalidArgument, "destination is required");
  return { sourcePaths, destination, username: (b.username ?? undefined) as string | undefined };
}

async function readBody(req: AnyRequest, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new EnvdError(Code.InvalidArgument, `request body larger than ${maxBytes} bytes`, { httpStatus: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

// ---------------------------------------------------------------------------------------------
// Shared

/** Token-or-signature check (§5.2), then the user (§5.3). Returns the user and the raw `path`. */
function authorize(deps: FilesDeps, ctx: RouteContext, operation: SigningOperation): { user: User; path: string | undefined } {
  const q = ctx.url.searchParams;
  const path = q.get("path") ?? undefined;
  const username = q.get("username") ?? undefined;
  checkSigning({
    token: deps.session.accessToken,
    headerToken: headerOf(ctx.req, "x-access-token"),
    signature: q.get("signature") ?? undefined,
    expiration: parseExpiration(q.get("signature_expiration")),
    username,
    path,
    operation,
    nowSeconds: Date.now() / 1000,
  });
  return { user: lookupUser(deps, username), path };
}

function lookupUser(deps: FilesDeps, username: string | undefined): User {
  const name = username ?? deps.session.defaultUser;
  if (username === undefined && name === "") throw new EnvdError(Code.InvalidArgument, "no user specified and no default user is set");
  const user = deps.users.lookup(name);
  if (!user) throw new EnvdError(Code.Unauthenticated, `error looking up user '${name}': unknown user`);
  return user;
}

function headerOf(req: AnyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(", ") : v;
}
