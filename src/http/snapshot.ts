/**
 * POST /snapshot/prepare (Wrenn, docs/protocol.md §4.7): quiesce before the host pauses the VM; the
 * next /health or /init runs the restore. No body. 204 with `Cache-Control: no-store`.
 *
 * In the Wrenn flavor every prepare also drops the page cache (after the sync) and runs a bounded
 * fstrim, as today's host expects (it never sends `?reclaim=1`; its comment in pause.go counts on
 * both to shrink the snapshot), all within its 5 s budget. In the E2B flavor (whose orchestrator
 * uses /freeze, not this route) both happen only with `?reclaim=1`.
 */
import { Code, EnvdError } from "../errors.ts";
import type { SnapshotLifecycle } from "../snapshot/snapshot-lifecycle.ts";
import type { RouteHandler } from "./router.ts";

export function postSnapshotPrepare(lifecycle: SnapshotLifecycle, opts: { alwaysReclaim?: boolean } = {}): RouteHandler {
  return async ({ req, res, url }) => {
    const reclaim = parseFlag(url.searchParams.get("reclaim"), "reclaim") || opts.alwaysReclaim === true;
    await lifecycle.prepare("snapshot", { dropCaches: reclaim, trim: reclaim });
    // Keep-alive is off from now on; this answer's own connection must not stay open either.
    if (req.httpVersionMajor === 1) res.setHeader("Connection", "close");
    res.setHeader("Cache-Control", "no-store");
    res.statusCode = 204;
    res.end();
  };
}

/** Query booleans: absent, "", "0", "false" → false; "1", "true" → true; anything else → 400. */
export function parseFlag(value: string | null, name: string): boolean {
  if (value === null || value === "" || value === "0" || value === "false") return false;
  if (value === "1" || value === "true") return true;
  throw new EnvdError(Code.InvalidArgument, `invalid value for ${name}: '${value}' (want true or false)`);
}
