/**
 * Directories as tar over /files (our addition, docs/compatibility.md "Beyond the anchors").
 * These wrap the GET and POST /files handlers and take a request only when it asks for tar:
 *
 * - GET with `?format=tar` / `tar.gz` (`tgz`), or on a directory with `Accept: application/x-tar`
 *   (or `application/gzip`): the tree as a tar stream (transfer/tar-pack.ts).
 * - POST with `Content-Type: application/x-tar` (or `application/gzip`, or `Content-Encoding:
 *   gzip`): the archive extracted into `path` (transfer/tar-extract.ts).
 *
 * Every other request goes to the wrapped handler untouched, so the E2B and Wrenn wire of /files
 * is byte for byte what it was (before this, a directory download was 400 and a tar content type
 * was 400). Access is checked as for any /files request (token or signed URL, §5.2; the user
 * §5.3), with `read` and `write` as the signed operations.
 */
import { lstat, realpath } from "node:fs/promises";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { constants as zlibConstants, createGunzip, createGzip } from "node:zlib";
import { Code, EnvdError } from "../errors.ts";
import { resolvePath } from "../fs/paths.ts";
import { contentDisposition } from "../transfer/content-disposition.ts";
import { drain, releaseRequestBody, requestBody, sourceErrors } from "../transfer/request-body.ts";
import { extractTar, TAR_STAGING_PREFIX } from "../transfer/tar-extract.ts";
import { packTree } from "../transfer/tar-pack.ts";
import { authorize, type FilesDeps } from "./files-auth.ts";
import { header } from "./headers.ts";
import { writeJson } from "./respond.ts";
import type { RouteContext, RouteHandler } from "./router.ts";

type TarFormat = "tar" | "tar.gz";

const TAR_TYPES = new Set(["application/x-tar", "application/tar"]);
const TGZ_TYPES = new Set(["application/gzip", "application/x-gzip", "application/x-gtar", "application/x-tgz", "application/x-compressed-tar", "application/tar+gzip"]);
const FORMATS: Record<string, TarFormat> = { tar: "tar", "tar.gz": "tar.gz", tgz: "tar.gz" };
const CONTENT_TYPE: Record<TarFormat, string> = { tar: "application/x-tar", "tar.gz": "application/gzip" };
/** As downloads: every archive is compressed at the fastest level (docs/architecture.md). */
const GZIP_LEVEL = zlibConstants.Z_BEST_SPEED;

/** GET /files: tar when the request asks for it, else `files` (the ordinary download). */
export function getFilesOrTar(deps: FilesDeps, files: RouteHandler): RouteHandler {
  return async (ctx) => {
    const format = await downloadFormat(deps, ctx);
    if (format === undefined) return files(ctx);
    return sendTar(deps, ctx, format);
  };
}

/** POST /files: extraction when the body is a tar, else `files` (the ordinary upload). */
export function postFilesOrTar(deps: FilesDeps, files: RouteHandler): RouteHandler {
  return async (ctx) => {
    const gzipType = uploadFormat(ctx);
    if (gzipType === undefined) return files(ctx);
    try {
      writeJson(ctx.res, 200, await receiveTar(deps, ctx, gzipType === "tar.gz"));
    } finally {
      releaseRequestBody(ctx.req);
      drain(ctx.req);
    }
  };
}

/** `?format=` decides; else an Accept naming a tar type, for a directory only. */
async function downloadFormat(deps: FilesDeps, ctx: RouteContext): Promise<TarFormat | undefined> {
  const asked = ctx.url.searchParams.get("format");
  if (asked !== null) {
    const format = FORMATS[asked.toLowerCase()];
    if (!format) throw new EnvdError(Code.InvalidArgument, `unsupported format '${asked}', supported: [tar, tar.gz]`);
    return format;
  }
  const accepted = acceptedTarFormat(header(ctx.req, "accept"));
  if (!accepted) return undefined;
  // Only a directory switches to tar by Accept: a file asked for with Accept: application/gzip
  // (a .gz file, say) is downloaded as it always was. A request that fails the access check is
  // left to the ordinary handler, which answers it as before.
  let resolved: string;
  try {
    const { user, path } = authorize(deps, ctx, "read");
    resolved = resolvePath(path ?? "", user.home, deps.session.defaultWorkdir);
  } catch {
    return undefined;
  }
  const st = await lstat(await realpath(resolved).catch(() => resolved)).catch(() => undefined);
  return st?.isDirectory() ? accepted : undefined;
}

/** The first tar type with q > 0 in an Accept header. */
export function acceptedTarFormat(accept: string | undefined): TarFormat | undefined {
  if (!accept) return undefined;
  for (const range of accept.split(",")) {
    const [type, ...params] = range.split(";").map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith("q="));
    if (q !== undefined && !(Number(q.slice(2)) > 0)) continue;
    if (TAR_TYPES.has(type ?? "")) return "tar";
    if (TGZ_TYPES.has(type ?? "")) return "tar.gz";
  }
  return undefined;
}

function uploadFormat(ctx: RouteContext): TarFormat | undefined {
  const mediaType = (header(ctx.req, "content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (TAR_TYPES.has(mediaType)) return "tar";
  if (TGZ_TYPES.has(mediaType)) return "tar.gz";
  return undefined;
}

async function sendTar(deps: FilesDeps, ctx: RouteContext, format: TarFormat): Promise<void> {
  const { req, res, signal } = ctx;
  const { user, path } = authorize(deps, ctx, "read");
  const resolved = resolvePath(path ?? "", user.home, deps.session.defaultWorkdir);
  // The named directory itself, also when `path` is a symlink to it.
  const root = await realpath(resolved).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new EnvdError(Code.NotFound, `path '${resolved}' does not exist`, { cause: err });
    throw new EnvdError(Code.Internal, `error opening '${resolved}': ${(err as Error).message}`, { cause: err, httpStatus: 500 });
  });
  const st = await lstat(root);
  if (!st.isDirectory() && !st.isFile() && !st.isSymbolicLink()) {
    throw new EnvdError(Code.InvalidArgument, `path '${resolved}' is not a regular file or directory`);
  }
  const name = `${basename(resolved) || "root"}.${format}`;
  res.statusCode = 200;
  res.setHeader("Content-Type", CONTENT_TYPE[format]);
  res.setHeader("Content-Disposition", contentDisposition(name).replace(/^inline/, "attachment"));
  res.setHeader("Last-Modified", st.mtime.toUTCString());
  res.setHeader("Vary", "Accept");
  res.setHeader("Cache-Control", "no-store");
  if (req.method === "HEAD") return void res.end();
  const stats = { entries: 0, bytes: 0 };
  const archive = packTree(root, {
    names: deps.users,
    signal,
    skip: (n) => n.startsWith(TAR_STAGING_PREFIX),
    onChanged: (p, message) => deps.log.warn(message, { path: p }),
  }, stats);
  const stages: unknown[] = format === "tar.gz" ? [archive, createGzip({ level: GZIP_LEVEL })] : [archive];
  try {
    await (pipeline as (...streams: unknown[]) => Promise<void>)(...stages, res, { signal });
    deps.log.debug("directory sent as tar", { path: root, format, entries: stats.entries, bytes: stats.bytes });
  } catch (err) {
    if (signal.aborted) return void deps.log.debug("tar download cut short by the client", { path: root, err });
    // The status is out: all we can do is cut the archive short, so the client sees it incomplete.
    deps.log.warn("tar download failed after the headers were sent", { path: root, err });
    res.destroy();
  }
}

async function receiveTar(deps: FilesDeps, ctx: RouteContext, gzipType: boolean) {
  const { req, signal } = ctx;
  const { user, path } = authorize(deps, ctx, "write");
  if (path === undefined || path === "") throw new EnvdError(Code.InvalidArgument, "path query parameter is required for a tar upload (the directory to extract into)");
  const contentEncoding = (header(req, "content-encoding") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (contentEncoding !== "" && contentEncoding !== "identity" && contentEncoding !== "gzip" && contentEncoding !== "x-gzip") {
    throw new EnvdError(Code.InvalidArgument, `unsupported Content-Encoding: ${contentEncoding}, supported: [identity, gzip]`);
  }
  const encoded = contentEncoding === "gzip" || contentEncoding === "x-gzip";
  const target = resolvePath(path, user.home, deps.session.defaultWorkdir);
  // A gzip media type and a gzip Content-Encoding are one layer each.
  const raw = requestBody(req, encoded || gzipType);
  let source: Readable = raw;
  if (encoded && gzipType) {
    const inner = createGunzip();
    raw.on("error", (err) => inner.destroy(err));
    source = raw.pipe(inner);
  }
  const body = sourceErrors(source, signal, encoded || gzipType ? "gzip" : "raw");
  const result = await extractTar(body, target, { owner: { uid: user.uid, gid: user.gid }, signal });
  deps.log.debug("tar extracted", { path: target, entries: result.entries, bytes: result.bytes, user: user.name });
  return [{ path: target, name: basename(target), type: "directory", entries: result.entries, bytes: result.bytes }];
}
