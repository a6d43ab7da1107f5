/**
 * POST /files: upload (docs/protocol.md §4.4), raw (`application/octet-stream`) or multipart, each file
 * written to a temporary name and renamed into place (transfer/atomic-write.ts). The body moves
 * through transfer/request-body.ts with backpressure; this file reads the request and picks
 * statuses.
 */
import { basename } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import { resolvePath } from "../fs/paths.ts";
import { type Metadata, readMetadata, validateMetadata } from "../fs/xattr.ts";
import { writeFileAtomically } from "../transfer/atomic-write.ts";
import { multipartParts } from "../transfer/multipart.ts";
import { drain, releaseRequestBody, requestBody, sourceErrors } from "../transfer/request-body.ts";
import { authorize, type FilesDeps } from "./files-auth.ts";
import { header } from "./headers.ts";
import { writeJson } from "./respond.ts";
import type { RouteContext, RouteHandler } from "./router.ts";

interface UploadEntry {
  path: string;
  name: string;
  type: "file";
  metadata?: Metadata;
}

export function postFiles(deps: FilesDeps): RouteHandler {
  return uploadRoute(deps, { putSemantics: false });
}

/**
 * PUT /files?path=… (today's Wrenn host): the same upload as POST — streaming, atomic, gzip, 507,
 * auth, the default user when no username — with the raw body as the usual form: any Content-Type
 * but multipart (or none) is the file's bytes. 200 with the same JSON as POST.
 */
export function putFiles(deps: FilesDeps): RouteHandler {
  return uploadRoute(deps, { putSemantics: true });
}

function uploadRoute(deps: FilesDeps, opts: { putSemantics: boolean }): RouteHandler {
  return async (ctx) => {
    const { req } = ctx;
    try {
      writeJson(ctx.res, 200, await upload(deps, ctx, opts));
    } finally {
      // Success or not, whatever the client still sends (an epilogue after the last multipart
      // boundary, or the rest of a failed upload) is read and dropped, so the connection can
      // carry the response and the next request.
      releaseRequestBody(req);
      drain(req);
    }
  };
}

async function upload(deps: FilesDeps, ctx: RouteContext, opts: { putSemantics: boolean }): Promise<UploadEntry[]> {
  const { req, signal } = ctx;
  const { user, path } = authorize(deps, ctx, "write");
  const metadata = metadataFromHeaders(req.rawHeaders);
  if (metadata) validateMetadata(metadata);

  const contentEncoding = (header(req, "content-encoding") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  if (contentEncoding !== "" && contentEncoding !== "identity" && contentEncoding !== "gzip" && contentEncoding !== "x-gzip") {
    throw new EnvdError(Code.InvalidArgument, `unsupported Content-Encoding: ${contentEncoding}, supported: [identity, gzip]`);
  }
  const gzip = contentEncoding === "gzip" || contentEncoding === "x-gzip";
  const contentType = header(req, "content-type") ?? "";
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  // A PUT's body is the file, whatever it is labelled (curl -T sends no type, fetch text/plain);
  // only multipart keeps its meaning.
  const isRaw = mediaType === "application/octet-stream" || (opts.putSemantics && !mediaType.startsWith("multipart/"));
  if (!isRaw && !mediaType.startsWith("multipart/")) {
    throw new EnvdError(
      Code.InvalidArgument,
      `unsupported content type: ${contentType || "(none)"}, expected multipart/form-data or application/octet-stream`,
    );
  }

  const body = requestBody(req, gzip);
  const owner = { uid: user.uid, gid: user.gid };
  const declared = Number(header(req, "content-length"));
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
