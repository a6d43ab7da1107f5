/**
 * What the /files routes share: their dependencies and the access check. GET and POST /files pass
 * the access-token gate and check the token header or a signed URL themselves (docs/protocol.md §5.2);
 * the user is the `username` query value (or JSON field), else the session's default user; an
 * unknown user is 401 (§5.3).
 */
import type { Logger } from "../log.ts";
import type { Session } from "../session.ts";
import { checkSigning, parseExpiration, type SigningOperation } from "../transfer/signing.ts";
import { resolveUser } from "../users/resolve-user.ts";
import type { User, UserDb } from "../users/user-db.ts";
import { header } from "./headers.ts";
import type { RouteContext } from "./router.ts";

export interface FilesDeps {
  session: Session;
  users: UserDb;
  log: Logger;
}

/** Token-or-signature check (§5.2), then the user (§5.3). Returns the user and the raw `path`. */
export function authorize(deps: FilesDeps, ctx: RouteContext, operation: SigningOperation): { user: User; path: string | undefined } {
  const q = ctx.url.searchParams;
  const path = q.get("path") ?? undefined;
  const username = q.get("username") ?? undefined;
  checkSigning({
    token: deps.session.accessToken,
    headerToken: header(ctx.req, "x-access-token"),
    signature: q.get("signature") ?? undefined,
    expiration: parseExpiration(q.get("signature_expiration")),
    username,
    path,
    operation,
    nowSeconds: Date.now() / 1000,
  });
  return { user: filesUser(deps, username), path };
}

/** The user a /files request names (or the default user), with the /files wording for an unknown one. */
export function filesUser(deps: FilesDeps, username: string | undefined): User {
  return resolveUser(deps.users, username, deps.session.defaultUser, "http");
}
