/**
 * E2B's pause endpoints (docs/protocol.md §4.6), all gated by the access token:
 *
 *   POST /freeze?mode=legacy|hierarchy&maxWaitMs=N&maxCgroups=N
 *        freeze the workload's cgroups (after quiescing the daemon). Without maxWaitMs (or ≤ 0):
 *        204 at once. With it: wait up to N ms for the kernel to report them frozen, then 200 with
 *        the FreezeResult JSON.
 *   POST /unfreeze   thaw (rollback of a pause that did not happen) → 204
 *   POST /fsfreeze   FIFREEZE on / → 204 (idempotent)
 *   POST /fsthaw     FITHAW on / → 204 (idempotent)
 *
 * A concurrent freeze/thaw, or a caller that left while waiting, gets 503.
 */
import { Code, EnvdError } from "../errors.ts";
import type { FreezeOptions } from "../process/cgroups.ts";
import type { FreezeController } from "../snapshot/freeze-controller.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

export const DEFAULT_MAX_CGROUPS = 512;
/** Longest wait a caller may ask for. */
const MAX_WAIT_LIMIT_MS = 60_000;

/** Reads the /freeze query; InvalidArgument (400) on a bad value. */
export function parseFreezeQuery(params: URLSearchParams): FreezeOptions {
  const mode = params.get("mode") || "legacy";
  if (mode !== "legacy" && mode !== "hierarchy") {
    throw new EnvdError(Code.InvalidArgument, `invalid mode '${mode}' (want legacy or hierarchy)`);
  }
  const int = (name: string, fallback: number): number => {
    const text = params.get(name);
    if (text === null || text === "") return fallback;
    if (!/^-?\d+$/.test(text)) throw new EnvdError(Code.InvalidArgument, `invalid ${name} '${text}' (want an integer)`);
    return Number(text);
  };
  const maxWaitMs = Math.min(int("maxWaitMs", 0), MAX_WAIT_LIMIT_MS);
  const maxCgroups = int("maxCgroups", DEFAULT_MAX_CGROUPS);
  if (maxCgroups <= 0) throw new EnvdError(Code.InvalidArgument, `invalid maxCgroups '${maxCgroups}' (want > 0)`);
  return { mode, maxWaitMs, maxCgroups };
}

export function postFreeze(freezer: FreezeController): RouteHandler {
  return async ({ req, res, url, signal }) => {
    const options = parseFreezeQuery(url.searchParams);
    const result = await freezer.freeze({ ...options, signal });
    // Keep-alive is off until the resume; this answer's own connection must not stay open either.
    if (req.httpVersionMajor === 1) res.setHeader("Connection", "close");
    if (signal.aborted) throw new EnvdError(Code.Unavailable, "the caller went away");
    if (options.maxWaitMs <= 0) return noContent(res);
    writeJson(res, 200, result, { "Cache-Control": "no-store" });
  };
}

export function postUnfreeze(freezer: FreezeController): RouteHandler {
  return async ({ res }) => {
    await freezer.unfreeze();
    noContent(res);
  };
}

export function postFsFreeze(freezer: FreezeController): RouteHandler {
  return async ({ res }) => {
    await freezer.fsFreeze();
    noContent(res);
  };
}

export function postFsThaw(freezer: FreezeController): RouteHandler {
  return async ({ res }) => {
    await freezer.fsThaw();
    noContent(res);
  };
}

function noContent(res: Parameters<RouteHandler>[0]["res"]): void {
  res.setHeader("Cache-Control", "no-store");
  res.statusCode = 204;
  res.end();
}
