/**
 * Remove as E2B envd does it: recursive, and a missing path is success (idempotent).
 *
 * Walks the tree itself rather than using fs.rm: Node's fs.rm reports a file it may not delete
 * (an immutable one, EPERM) as ENOTDIR, and Bun's as EFAULT, so the client would get the wrong
 * error, or none. Here the failing path and its real errno reach the client.
 */
import { lstat, readdir, rmdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { fromNodeError } from "../errors.ts";
import { isGone } from "./entry-info.ts";

/** Entries of one directory removed at once. */
const PARALLEL = 16;

export async function remove(path: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await lstat(path)).isDirectory();
  } catch (err) {
    if (isGone(err)) return;
    throw fromNodeError(err, `cannot remove ${path}`);
  }
  if (!isDir) {
    await attempt(() => unlink(path), path);
    return;
  }
  let names: string[];
  try {
    names = await readdir(path);
  } catch (err) {
    if (isGone(err)) return;
    throw fromNodeError(err, `cannot remove ${path}`);
  }
  for (let i = 0; i < names.length; i += PARALLEL) {
    await Promise.all(names.slice(i, i + PARALLEL).map((name) => remove(join(path, name))));
  }
  await attempt(() => rmdir(path), path);
}

async function attempt(op: () => Promise<void>, path: string): Promise<void> {
  try {
    await op();
  } catch (err) {
    if (isGone(err)) return;
    throw fromNodeError(err, `cannot remove ${path}`);
  }
}
