/**
 * ListDir as E2B envd walks (docs/protocol.md §3.4): the requested path's symlinks are resolved and it
 * must be a directory; the walk itself never follows symlinks (so a link loop cannot trap it),
 * visits names in byte order, depth first, and returns every entry at most `depth` levels below
 * the root (root excluded). Paths are reported under the path as requested, not the resolved one.
 * Entries that vanish during the walk are skipped.
 */
import type { Dirent } from "node:fs";
import { opendir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import { type Entry, entryInfoIfExists, isGone, type OwnerNames } from "./entry-info.ts";

/** Deepest listing accepted; 0 means 1, as in E2B envd. */
export const MAX_LIST_DEPTH = 256;
/** Most entries one listing returns; a larger tree is refused rather than sent half. */
export const MAX_LIST_ENTRIES = 250_000;

export interface ListDirOptions {
  maxEntries?: number;
}

export async function listDir(requested: string, depth: number, names: OwnerNames, opts: ListDirOptions = {}): Promise<Entry[]> {
  if (!Number.isInteger(depth) || depth < 0 || depth > MAX_LIST_DEPTH) {
    throw new EnvdError(Code.InvalidArgument, `depth must be between 0 and ${MAX_LIST_DEPTH} (0 means 1), got ${depth}`);
  }
  const maxDepth = depth === 0 ? 1 : depth;
  const maxEntries = opts.maxEntries ?? MAX_LIST_ENTRIES;
  let resolved: string;
  try {
    resolved = await realpath(requested);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new EnvdError(Code.NotFound, `path not found: ${requested}`, { cause: err });
    if (code === "ELOOP") {
      throw new EnvdError(Code.FailedPrecondition, `cyclic symlink or chain of more than 255 links at ${requested}`, { cause: err });
    }
    if (code === "ENOTDIR") throw new EnvdError(Code.InvalidArgument, `path is not a directory: ${requested}`, { cause: err });
    throw fromNodeError(err, `cannot resolve ${requested}`);
  }
  const st = await stat(resolved).catch((err: unknown) => {
    if (isGone(err)) throw new EnvdError(Code.NotFound, `directory not found: ${requested}`, { cause: err });
    throw fromNodeError(err, `stat ${requested}`);
  });
  if (!st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path is not a directory: ${requested}`);

  const out: Entry[] = [];
  // Depth-first, pre-order, each directory's names sorted: the order of Go's filepath.WalkDir.
  const walk = async (realDir: string, shownDir: string, level: number): Promise<void> => {
    const children = await readDirSorted(realDir, level === 1);
    if (children === undefined) return;
    for (const child of children) {
      const entry = await entryInfoIfExists(join(shownDir, child.name), names);
      if (!entry) continue;
      if (out.length >= maxEntries) {
        throw new EnvdError(
          Code.ResourceExhausted,
          `listing ${requested} to depth ${maxDepth} has more than ${maxEntries} entries; list with a smaller depth`,
        );
      }
      out.push(entry);
      if (level < maxDepth && child.isDirectory()) await walk(join(realDir, child.name), join(shownDir, child.name), level + 1);
    }
  };
  await walk(resolved, requested, 1);
  return out;
}

/** Entries of `dir` sorted by name bytes; undefined if it vanished (except the root). */
async function readDirSorted(dir: string, isRoot: boolean): Promise<Dirent[] | undefined> {
  const entries: Dirent[] = [];
  try {
    const handle = await opendir(dir, { bufferSize: 256 });
    for await (const d of handle) entries.push(d);
  } catch (err) {
    if (!isRoot && isGone(err)) return undefined;
    throw fromNodeError(err, `error reading directory ${dir}`);
  }
  return entries
    .map((d) => ({ d, key: Buffer.from(d.name) }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map((x) => x.d);
}
