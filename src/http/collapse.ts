/**
 * POST /collapse (docs/protocol.md §4.9, called by the orchestrator just before a pause): fold the
 * daemon's own anonymous memory into 2 MiB hugepages (src/upkeep/heap-collapse.ts) and answer 200
 * `{"regions","chunks","collapsed","alreadyHuge","skipped","elapsedMs"}` with `no-store`. Best
 * effort: where nothing can be collapsed the counts say so and it is still a 200. Calls that
 * overlap share one walk.
 */
import type { Logger } from "../log.ts";
import { type CollapseStats, collapseSelf } from "../upkeep/heap-collapse.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

export function postCollapse(log: Logger, collapse: (signal: AbortSignal) => Promise<CollapseStats> = collapseSelf): RouteHandler {
  let running: Promise<CollapseStats & { elapsedMs: number }> | undefined;
  return async ({ res, signal }) => {
    running ??= (async () => {
      const started = performance.now();
      try {
        const stats = await collapse(signal);
        const elapsedMs = Math.round(performance.now() - started);
        log.info("collapsed the daemon's heap", { ...stats, elapsedMs });
        return { ...stats, elapsedMs };
      } finally {
        running = undefined;
      }
    })();
    const result = await running;
    writeJson(res, 200, result, { "Cache-Control": "no-store" });
  };
}
