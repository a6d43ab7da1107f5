/**
 * The user a request acts as: `Authorization: Basic base64("<user>:")` (password ignored), else the
 * default user set by /init (root at boot). An unknown name is Unauthenticated, as in E2B envd.
 */
import { Code, EnvdError } from "../errors.ts";
import type { User, UserDb } from "../users/user-db.ts";
import type { Session } from "../session.ts";

export function usernameFromAuthorization(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  const name = colon === -1 ? decoded : decoded.slice(0, colon);
  return name === "" ? undefined : name;
}

/** Resolves a user by name, or the session's default user when `name` is undefined. */
export function resolveUser(name: string | undefined, users: UserDb, session: Session): User {
  const wanted = name ?? session.defaultUser;
  const user = users.lookup(wanted);
  if (!user) throw new EnvdError(Code.Unauthenticated, `invalid username: '${wanted}'`);
  return user;
}
