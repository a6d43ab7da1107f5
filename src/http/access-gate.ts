/**
 * The access-token gate (docs/protocol.md §5.1). With no token set everything is open. With one, every
 * request must carry `X-Access-Token` equal to it (constant time), except the routes the auth table
 * (auth-table.ts) marks open or own-check for the daemon's flavor: GET /health, GET and POST
 * /files, POST /init, and in the Wrenn flavor only, POST /snapshot/prepare.
 */
import type { Flavor } from "../control/vm-config.ts";
import type { Session } from "../session.ts";
import { accessOf } from "./auth-table.ts";

export const UNAUTHORIZED_MESSAGE =
  "unauthorized access, please provide a valid access token or method signing if supported";

export function isAllowed(session: Session, method: string, path: string, token: string | undefined, flavor: Flavor = "e2b"): boolean {
  if (!session.hasAccessToken) return true;
  const access = accessOf(flavor, method, path);
  if (access === "open" || access === "own-check") return true;
  return session.checkAccessToken(token);
}
