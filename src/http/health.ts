/** GET /health: never gated; 204 for the E2B orchestrator, 200 {"version"} for the Wrenn host. */
import type { Flavor } from "../config.ts";
import { ENVD_VERSION } from "../version.ts";
import type { RouteHandler } from "./router.ts";

export function getHealth(flavor: Flavor, onHealth: () => void = () => {}): RouteHandler {
  return ({ res }) => {
    onHealth();
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
