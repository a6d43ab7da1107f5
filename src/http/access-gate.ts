/**
 * The access-token gate (docs/protocol.md §5.1). With no token set everything is open. With one, every
 * request must carry `X-Access-Token` equal to it (constant time), except the routes that do their
 * own checks or must stay open: GET /health, GET and POST /files, POST /init (and Wrenn's
 * POST /snapshot/prepare).
 */
import type { Session } from "../session.ts";

const EXEMPT = new Set(["GET /health", "HEAD /health", "GET /files", "HEAD /files", "POST /files", "POST /init", "POST /snapshot/prepare"]);

export const UNAUTHORIZED_MESSAGE =
  "unauthorized access, please provide a valid access token or method signing if supported";

export function isAllowed(session: Session, method: string, path: string, token: string | undefined): boolean {
  if (!session.hasAccessToken) return true;
  if (EXEMPT.has(`${method} ${path}`)) return true;
  return session.checkAccessToken(token);
}
