/**
 * The user a Connect call or a GET /exec names: `Authorization: Basic base64("<user>:")` (password
 * ignored). Undefined means the session's default user; resolve-user.ts turns either into a User.
 */

export function usernameFromAuthorization(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+(\S+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  const name = colon === -1 ? decoded : decoded.slice(0, colon);
  return name === "" ? undefined : name;
}
