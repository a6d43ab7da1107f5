/**
 * Where an upload lands. (The directories on the way are made by fs/make-dir.ts `ensureDirs`.)
 */
import { lstat, readlink } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";

/** Most symlinks followed on the last component (the kernel's own limit). */
const MAX_SYMLINK_HOPS = 40;

/**
 * The path a write to `path` must replace. If the last component is a symlink, Go envd writes
 * *through* it (open(O_CREAT|O_TRUNC) follows links, creating a dangling link's target); an
 * atomic rename would instead replace the link itself. So the link chain is followed here and the
 * temporary file is made beside the real target. Links in parent components are left to the
 * kernel.
 */
export async function resolveWriteTarget(path: string): Promise<string> {
  let p = path;
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return p;
      if (code === "ENOTDIR") throw new EnvdError(Code.InvalidArgument, `path '${path}': a parent is not a directory`, { cause: err });
      throw fromNodeError(err, `path '${path}'`);
    }
    if (!st.isSymbolicLink()) return p;
    p = resolve(dirname(p), await readlink(p));
  }
  throw new EnvdError(Code.InvalidArgument, `path '${path}': too many levels of symbolic links`);
}
