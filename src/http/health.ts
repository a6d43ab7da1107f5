/**
 * GET /health: never gated; 204 for the E2B orchestrator, 200 {"version"} for the Wrenn host.
 * `onHealth` runs first and is awaited: after a snapshot prepare it runs the restore (snapshot/snapshot-lifecycle.ts).
 */
import type { Flavor } from "../control/vm-config.ts";
import { ENVD_VERSION } from "../version.ts";
import type { RouteContext, RouteHandler } from "./router.ts";

export function getHealth(flavor: Flavor, onHealth: (ctx: RouteContext) => void | Promise<void> = () => {}): RouteHandler {
  return async (ctx) => {
    const { res } = ctx;
    await onHealth(ctx);
    res.setHeader("Cache-Control", "no-store");
    if (flavor === "wrenn") {
      const body = JSON.stringify({ version: ENVD_VERSION });
      res.statusCode = 200;
      res.setHeader("Content-Type", "application/json");
      res.end(body);
      return;
    }
    res.statusCode = 204;
    res.end();
  };
}
