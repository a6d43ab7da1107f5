/**
 * The user a request acts as: the name it gives, else the session's default user (root at boot).
 * An unknown name is Unauthenticated, as in E2B envd; the wording differs between RPC
 * (`permissions.GetAuthUser`) and the /files handlers, and clients match on both.
 */
import { Code, EnvdError } from "../errors.ts";
import type { User, UserDb } from "./user-db.ts";

/** Which E2B message an unknown name gets: `invalid username: 'x'` (rpc) or `error looking up user 'x': unknown user` (http). */
export type UnknownUserWording = "rpc" | "http";

/** Resolves `requested`, or `defaultUser` when undefined. Throws InvalidArgument when neither names a user. */
export function resolveUser(users: UserDb, requested: string | undefined, defaultUser: string, wording: UnknownUserWording): User {
  const name = requested ?? defaultUser;
  if (requested === undefined && name === "") throw new EnvdError(Code.InvalidArgument, "no user specified and no default user is set");
  const user = users.lookup(name);
  if (user) return user;
  throw new EnvdError(Code.Unauthenticated, wording === "rpc" ? `invalid username: '${name}'` : `error looking up user '${name}': unknown user`);
}
