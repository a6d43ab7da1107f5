/** GET /envs: the default environment of new processes (/init variables plus internal ones). */
import type { Session } from "../session.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

export function getEnvs(session: Session): RouteHandler {
  return ({ res }) => writeJson(res, 200, session.defaultEnv(), { "Cache-Control": "no-store" });
}
