/**
 * What keeps an extracted archive inside its target (transfer/tar-extract.ts): entry names
 * (no absolute paths, no `..`, nothing written through a link or a file of the same archive) and
 * symlinks, each followed component by component through the tree the extraction would leave.
 */
import { lstat, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { Code, EnvdError } from "../errors.ts";

/** Symlinks followed while resolving one link target. */
const MAX_LINK_HOPS = 40;

/** What an archive entry makes, as far as the checks need to know. */
export type Kind = { t: "dir"; mode: number; mtime: Date } | { t: "file" } | { t: "symlink"; target: string } | { t: "hardlink" };

const refuse = (message: string) => new EnvdError(Code.InvalidArgument, message);

/**
 * An archive name as a path relative to the target: `./` and empty components dropped.
 * Absolute names and `..` components are refused.
 */
export function entryName(name: string): string {
  if (name.includes("\0")) throw refuse(`entry '${name.replaceAll("\0", "\\0")}' has a NUL byte in its name`);
  if (name.startsWith("/")) throw refuse(`entry '${name}' has an absolute path: it would be written outside the target`);
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw refuse(`entry '${name}' contains '..': it would be written outside the target`);
    parts.push(part);
  }
  return parts.join("/");
}

/** No entry may be written through a symlink, a file or a hard link of the same archive. */
export function checkAncestors(rel: string, entries: Map<string, Kind>, name: string): void {
  for (let i = rel.indexOf("/"); i >= 0; i = rel.indexOf("/", i + 1)) {
    const k = entries.get(rel.slice(0, i));
    if (!k || k.t === "dir") continue;
    if (k.t === "symlink") throw refuse(`entry '${name}' goes through the symlink '${rel.slice(0, i)}' of the archive`);
    throw refuse(`entry '${name}' is below '${rel.slice(0, i)}', which the archive makes a file`);
  }
}

/**
 * Every symlink of the archive, followed through the tree the extraction would leave (archive
 * entries over the existing target), must stay inside the target.
 */
export async function checkLinks(entries: Map<string, Kind>, root: string, exists: boolean): Promise<void> {
  const kindAt = async (rel: string): Promise<{ t: "symlink"; target: string } | { t: "other" } | { t: "missing" }> => {
    const k = entries.get(rel);
    if (k) return k.t === "symlink" ? k : { t: "other" };
    if (!exists) return { t: "missing" };
    try {
      const st = await lstat(join(root, rel));
      return st.isSymbolicLink() ? { t: "symlink", target: await readlink(join(root, rel)) } : { t: "other" };
    } catch {
      return { t: "missing" };
    }
  };
  for (const [rel, k] of entries) {
    if (k.t !== "symlink") continue;
    const outside = await resolvesOutside(posix.dirname(rel) === "." ? "" : posix.dirname(rel), k.target, kindAt);
    if (outside !== undefined) {
      const through = outside === ".." || outside === "absolute" ? "" : ` (through the symlink '${outside}')`;
      throw refuse(`symlink '${rel}' -> '${k.target}' points out of the target${through}`);
    }
  }
}

/**
 * Follows `linkTarget` from directory `fromDir` (relative to the root) component by component,
 * expanding every symlink met on the way (as the kernel would). Returns undefined when it stays
 * inside the root; otherwise what took it out ("absolute", "..", or the symlink it went through).
 * A loop never resolves, so it cannot point out: allowed.
 */
export async function resolvesOutside(
  fromDir: string,
  linkTarget: string,
  kindAt: (rel: string) => Promise<{ t: "symlink"; target: string } | { t: "other" } | { t: "missing" }>,
): Promise<string | undefined> {
  if (linkTarget.startsWith("/")) return "absolute";
  const cur = fromDir === "" ? [] : fromDir.split("/");
  const queue = linkTarget.split("/");
  let via: string | undefined;
  for (let hops = 0; queue.length > 0; ) {
    const part = queue.shift() as string;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (cur.length === 0) return via ?? "..";
      cur.pop();
      continue;
    }
    cur.push(part);
    const k = await kindAt(cur.join("/"));
    if (k.t !== "symlink") continue;
    if (++hops > MAX_LINK_HOPS) return undefined;
    via ??= cur.join("/");
    if (k.target.startsWith("/")) return via;
    cur.pop();
    queue.unshift(...k.target.split("/"));
  }
  return undefined;
}
