/**
 * Path resolution shared by the filesystem RPCs, Start's cwd and /files (docs/protocol.md §3.3):
 *  1. empty → the default workdir, if one is set;
 *  2. `~` or `~/…` → the user's home plus the rest; `~name/…` is refused;
 *  3. absolute → unchanged;
 *  4. relative (or still empty) → joined to the user's home, cleaned.
 */
import { isAbsolute, join, normalize } from "node:path";
import { Code, EnvdError } from "../errors.ts";

export function resolvePath(path: string, home: string, defaultWorkdir: string | undefined): string {
  let p = path;
  if (p === "" && defaultWorkdir) p = defaultWorkdir;
  if (p === "~" || p.startsWith("~/")) return normalize(join(home, p.slice(1)));
  if (p.startsWith("~")) {
    throw new EnvdError(Code.InvalidArgument, `cannot expand user-specific home dir: ${p}`);
  }
  if (p.includes("\0")) throw new EnvdError(Code.InvalidArgument, "path contains a NUL byte");
  if (isAbsolute(p)) return p;
  return normalize(join(home, p));
}
