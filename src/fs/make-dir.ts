/**
 * Directory creation as E2B envd does it: like `mkdir -p`, each level it creates gets mode 0755
 * and belongs to the requesting user. Shared by MakeDir, Move (the destination's parents) and
 * uploads (the file's parents).
 */
import { chown, mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";

export interface Owner {
  uid: number;
  gid: number;
}

/**
 * Creates `path` and any missing parents, each 0755 and chowned to `owner`. Levels that already
 * exist are left alone (their owner is not changed). Idempotent; safe against a concurrent
 * creator of the same directories. Returns true if `path` itself was created here.
 * A parent that exists but is not a directory → InvalidArgument.
 */
export async function ensureDirs(path: string, owner: Owner): Promise<boolean> {
  const missing: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    let st: import("node:fs").Stats | undefined;
    try {
      st = await stat(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOTDIR: some ancestor is a file; going up finds it and reports it by name.
      if (code !== "ENOENT" && code !== "ENOTDIR") throw fromNodeError(err, `cannot create directory ${path}`);
    }
    if (st) {
      if (!st.isDirectory()) throw notADirectory(p);
      break;
    }
    missing.push(p);
    if (dirname(p) === p) break;
  }
  let createdLast = false;
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir, { mode: 0o755 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") {
        // Someone else made it in the meantime; fine if it is a directory.
        const st = await stat(dir).catch(() => undefined);
        if (st?.isDirectory()) {
          createdLast = false;
          continue;
        }
        throw notADirectory(dir, err);
      }
      if (code === "ENOTDIR") throw notADirectory(dirname(dir), err);
      throw fromNodeError(err, `cannot create directory ${dir}`);
    }
    createdLast = true;
    try {
      await chown(dir, owner.uid, owner.gid);
    } catch (err) {
      throw fromNodeError(err, `cannot change the owner of ${dir}`);
    }
  }
  return createdLast;
}

function notADirectory(path: string, cause?: unknown): EnvdError {
  return new EnvdError(Code.InvalidArgument, `path already exists but it is not a directory: ${path}`, { cause });
}

/**
 * MakeDir: AlreadyExists when `path` is a directory already (the SDK turns that into `false`),
 * InvalidArgument when something else is there, otherwise `ensureDirs`.
 */
export async function makeDir(path: string, owner: Owner): Promise<void> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
    throw fromNodeError(err, `cannot create directory ${path}`);
  });
  if (st?.isDirectory()) throw new EnvdError(Code.AlreadyExists, `directory already exists: ${path}`);
  if (st) throw notADirectory(path);
  if (!(await ensureDirs(path, owner))) {
    // Lost a race with a concurrent creator: the directory exists now, made by someone else.
    throw new EnvdError(Code.AlreadyExists, `directory already exists: ${path}`);
  }
}
