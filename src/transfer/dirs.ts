/**
 * Where an upload lands, and the directories on the way there.
 */
import { chown, lstat, mkdir, readlink, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";

export interface Owner {
  uid: number;
  gid: number;
}

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

/**
 * `mkdir -p` where every directory created gets mode 0755 (before umask) and belongs to `owner`,
 * as Go's EnsureDirs. Existing directories are left as they are. Safe against a concurrent
 * creator (EEXIST of a directory is success). A non-directory on the way → InvalidArgument (400).
 */
export async function ensureDirs(dir: string, owner: Owner): Promise<void> {
  const missing: string[] = [];
  let p = resolve(dir);
  for (;;) {
    try {
      const st = await stat(p);
      if (!st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path '${p}' is not a directory`);
      break;
    } catch (err) {
      if (err instanceof EnvdError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTDIR") throw new EnvdError(Code.InvalidArgument, `path '${p}': a parent is not a directory`, { cause: err });
      if (code !== "ENOENT") throw fromNodeError(err, `error ensuring directory '${p}'`);
      missing.push(p);
      const parent = dirname(p);
      if (parent === p) break;
      p = parent;
    }
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d, { mode: 0o755 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") {
        const st = await stat(d).catch(() => undefined);
        if (st?.isDirectory()) continue;
        throw new EnvdError(Code.InvalidArgument, `path '${d}' is not a directory`, { cause: err });
      }
      if (code === "ENOSPC") {
        throw new EnvdError(Code.ResourceExhausted, `not enough disk space available to create directory '${d}'`, {
          cause: err,
          httpStatus: 507,
        });
      }
      throw fromNodeError(err, `error creating directory '${d}'`);
    }
    try {
      await chown(d, owner.uid, owner.gid);
    } catch (err) {
      throw fromNodeError(err, `error changing ownership of '${d}'`);
    }
  }
}
