/**
 * POST /files/compose (docs/protocol.md §4.5): concatenate files into one, behind the access-token
 * gate. JSON body `{source_paths, destination, username?}`.
 */
import { basename } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import { resolvePath } from "../fs/paths.ts";
import { composeFiles } from "../transfer/compose.ts";
import { drain, readBody } from "../transfer/request-body.ts";
import { type FilesDeps, filesUser } from "./files-auth.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

/** Largest /files/compose JSON body. */
const COMPOSE_BODY_MAX_BYTES = 1 << 20;

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
    const user = filesUser(deps, username);
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
