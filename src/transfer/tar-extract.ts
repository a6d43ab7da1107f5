/**
 * Extracts a tar stream into a directory (POST /files with a tar body, docs/compatibility.md
 * "Beyond the anchors"): all or nothing against the archive's own faults, atomic per file.
 *
 * Why staging, not two passes over a spooled copy: the archive is a stream, and an entry that
 * must be refused (an absolute name, `..`, a link pointing out, a name through a symlink) can
 * come after a gigabyte of good ones. So every entry is checked as it arrives and written into a
 * private staging directory (`.e2b-upload-<random>.tar.d`, mode 0700, root's) on the target's own
 * filesystem; the target is not touched while the body is read. Once the stream ended well, the
 * links are checked against the whole tree (the archive's entries over the existing target:
 * a symlink is followed component by component, so `l -> d/x/..` cannot escape through another
 * link), and the staged tree is laid against the target (a directory over an existing
 * non-directory, or the reverse, is refused). Only then is anything moved in: each staged entry
 * whose target path is missing is renamed in whole (one rename for a new subtree), a directory
 * that exists already is merged into, a file or link replaces the old one with one rename(2).
 * A spooled copy would cost the same disk space, twice the I/O, and still need per-file renames.
 *
 * So: a refused archive, a truncated or corrupt stream, a client that leaves, a full disk →
 * the staging directory is removed and the target is as it was. A concurrent writer of the same
 * tree during the final moves can still make one rename fail half-way; what was moved stays.
 *
 * Entries belong to the requesting user (not to the archive's uid/gid, as GNU tar run by that
 * user); permission bits (without setuid/setgid) and mtimes come from the archive. Directories
 * that already exist keep their owner, mode and mtime. Devices and FIFOs are refused (an
 * unprivileged `tar -x` could not make devices either); hard links must name an earlier file of
 * the same archive.
 */
import { randomBytes } from "node:crypto";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, realpath, rename, rm, symlink, unlink, utimes } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";
import type { Readable } from "node:stream";
import tarStream from "tar-stream";

type TarEntry = tarStream.ExtractEvents["entry"][1];
type TarHeader = tarStream.Header;
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import { ensureDirs, type Owner } from "../fs/make-dir.ts";
import { noteTransferred } from "./gc-pacer.ts";
import { checkAncestors, checkLinks, entryName, type Kind } from "./tar-safety.ts";

/** Most entries one archive may hold (each costs a small record until the end). */
export const TAR_MAX_ENTRIES = 1_000_000;
export const TAR_STAGING_PREFIX = ".e2b-upload-";
const DAEMON_UID = process.getuid?.() ?? -1;
const DAEMON_GID = process.getgid?.() ?? -1;

export interface ExtractOptions {
  owner: Owner;
  signal: AbortSignal;
  maxEntries?: number;
}

export interface ExtractResult {
  /** Entries written (files, directories, links). */
  entries: number;
  /** Bytes of file content. */
  bytes: number;
}

const refuse = (message: string) => new EnvdError(Code.InvalidArgument, message);

/**
 * Reads the archive from `body` (already gunzipped) into `target` (an absolute path; created,
 * with its missing parents, as the user's, when absent).
 */
export async function extractTar(body: Readable | AsyncIterable<Uint8Array>, target: string, options: ExtractOptions): Promise<ExtractResult> {
  const { owner, signal } = options;
  signal.throwIfAborted();
  const maxEntries = options.maxEntries ?? TAR_MAX_ENTRIES;
  const { root, exists } = await resolveTarget(target);
  const base = exists ? root : await nearestDirectory(root);
  const staging = join(base, `${TAR_STAGING_PREFIX}${randomBytes(8).toString("hex")}.tar.d`);
  await mkdir(staging, { mode: 0o700 }).catch((err: unknown) => {
    throw fromNodeError(err, `cannot extract into ${target}`);
  });
  try {
    const entries = new Map<string, Kind>();
    const stagedDirs = new Set<string>([""]);
    let bytes = 0;
    const extract = tarStream.extract();
    const feeding = feed(body, extract);
    try {
      for await (const entry of extract as AsyncIterable<TarEntry>) {
        signal.throwIfAborted();
        const h = entry.header;
        const rel = entryName(h.name);
        if (rel === "") {
          // `./` itself: the target directory (left as it is).
          if (h.type !== "directory") throw refuse(`entry '${h.name}' names the target itself but is not a directory`);
          await drainEntry(entry);
          continue;
        }
        if (entries.size >= maxEntries && !entries.has(rel)) {
          throw new EnvdError(Code.ResourceExhausted, `archive has more than ${maxEntries} entries`);
        }
        checkAncestors(rel, entries, h.name);
        const previous = entries.get(rel);
        const staged = join(staging, rel);
        await ensureStagedParent(staging, rel, stagedDirs, owner);
        switch (h.type) {
          case "directory": {
            if (previous && previous.t !== "dir") throw refuse(`entry '${h.name}' is a directory, an earlier entry of that name is not`);
            if (!previous) {
              await mkdir(staged, { mode: 0o700 });
              await chownIfOther(staged, owner);
              stagedDirs.add(rel);
            }
            entries.set(rel, { t: "dir", mode: (h.mode ?? 0o755) & 0o1777, mtime: h.mtime ?? new Date() });
            await drainEntry(entry);
            break;
          }
          case "file":
          case "contiguous-file": {
            if (previous?.t === "dir") throw refuse(`entry '${h.name}' is a file, an earlier entry of that name is a directory`);
            if (previous) await unlink(staged);
            bytes += await writeStagedFile(entry, staged, h, owner, signal);
            entries.set(rel, { t: "file" });
            break;
          }
          case "symlink": {
            if (previous?.t === "dir") throw refuse(`entry '${h.name}' is a symlink, an earlier entry of that name is a directory`);
            const linkTarget = h.linkname ?? "";
            if (linkTarget === "" || linkTarget.includes("\0")) throw refuse(`symlink '${h.name}' has an empty or invalid target`);
            if (linkTarget.startsWith("/")) throw refuse(`symlink '${h.name}' points to an absolute path (${linkTarget}): it would point out of the target`);
            if (previous) await unlink(staged);
            await symlink(linkTarget, staged);
            await chownIfOther(staged, owner);
            if (h.mtime) await lutimes(staged, h.mtime, h.mtime);
            entries.set(rel, { t: "symlink", target: linkTarget });
            await drainEntry(entry);
            break;
          }
          case "link": {
            if (previous?.t === "dir") throw refuse(`entry '${h.name}' is a hard link, an earlier entry of that name is a directory`);
            const source = entryName(h.linkname ?? "");
            const kind = entries.get(source);
            if (source === "" || (kind?.t !== "file" && kind?.t !== "hardlink")) {
              throw refuse(`hard link '${h.name}' must name an earlier file of the archive, not '${h.linkname ?? ""}'`);
            }
            if (source === rel) throw refuse(`hard link '${h.name}' names itself`);
            if (previous) await unlink(staged);
            await link(join(staging, source), staged);
            entries.set(rel, { t: "hardlink" });
            await drainEntry(entry);
            break;
          }
          default:
            throw refuse(`entry '${h.name}' is a ${h.type ?? "unknown"} entry: only files, directories, symlinks and hard links can be extracted`);
        }
      }
      await feeding;
    } catch (err) {
      extract.destroy(new Error("extraction stopped"));
      await feeding.catch(() => {});
      throw err;
    }

    await checkLinks(entries, root, exists);
    // Directory modes and mtimes last: writing their content changed the mtimes.
    const dirs = [...entries].filter((e): e is [string, Extract<Kind, { t: "dir" }>] => e[1].t === "dir");
    for (const [rel, k] of dirs.reverse()) {
      const p = join(staging, rel);
      await chmod(p, k.mode);
      await utimes(p, k.mtime, k.mtime);
    }
    const moves = exists ? await planMerge(staging, root) : await topLevel(staging, root);
    signal.throwIfAborted();
    if (!exists) await ensureDirs(root, owner);
    for (const [from, to] of moves) await rename(from, to);
    return { entries: entries.size, bytes };
  } catch (err) {
    throw asClientError(err, signal, target);
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

/** Pipes the body into the parser; its end ends the parser, its failure destroys it. */
async function feed(body: Readable | AsyncIterable<Uint8Array>, extract: tarStream.Extract): Promise<void> {
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      if (extract.destroyed) return;
      noteTransferred(chunk.length);
      if (!extract.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            extract.off("drain", done);
            extract.off("close", done);
            resolve();
          };
          extract.on("drain", done);
          extract.on("close", done);
        });
      }
    }
    if (!extract.destroyed) extract.end(undefined);
  } catch (err) {
    extract.destroy(err as Error);
    throw err;
  }
}

/** lchown, skipped when the daemon's own user is the owner (it made the entry). */
async function chownIfOther(path: string, owner: Owner): Promise<void> {
  if (owner.uid !== DAEMON_UID || owner.gid !== DAEMON_GID) await lchown(path, owner.uid, owner.gid);
}

/** Parents missing in staging (an archive need not list directories) are made as the user's. */
async function ensureStagedParent(staging: string, rel: string, stagedDirs: Set<string>, owner: Owner): Promise<void> {
  const parent = posix.dirname(rel);
  if (parent === "." || stagedDirs.has(parent)) return;
  const missing: string[] = [];
  for (let p = parent; p !== "." && !stagedDirs.has(p); p = posix.dirname(p)) missing.push(p);
  for (const p of missing.reverse()) {
    await mkdir(join(staging, p), { mode: 0o755 });
    await chownIfOther(join(staging, p), owner);
    stagedDirs.add(p);
  }
}

/** The daemon's umask (read once; process.umask() without an argument is deprecated). */
const UMASK = (() => {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number.parseInt(m[1] as string, 8) : 0o777;
  } catch {
    return 0o777; // unknown: always chmod
  }
})();

async function writeStagedFile(entry: TarEntry, path: string, h: TarHeader, owner: Owner, signal: AbortSignal): Promise<number> {
  // Without setuid/setgid: the file now belongs to the requesting user, not the archive's owner.
  const mode = (h.mode ?? 0o644) & 0o1777;
  // Each saved call counts at 100,000 small files: create with the final mode when the umask
  // leaves it whole, and chown only when the owner is not the daemon's own user.
  const direct = (mode & UMASK) === 0 && (mode & 0o7000) === 0;
  const handle = await open(path, "wx", direct ? mode : 0o600);
  let bytes = 0;
  try {
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      signal.throwIfAborted();
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, off, chunk.length - off);
        off += bytesWritten;
      }
      bytes += chunk.length;
    }
    if (owner.uid !== DAEMON_UID || owner.gid !== DAEMON_GID) await handle.chown(owner.uid, owner.gid);
    if (!direct) await handle.chmod(mode);
    if (h.mtime) await handle.utimes(h.mtime, h.mtime);
  } finally {
    await handle.close();
  }
  return bytes;
}

async function drainEntry(entry: TarEntry): Promise<void> {
  for await (const _ of entry as AsyncIterable<Buffer>) {
    // header-only entries carry no data; anything else is skipped
  }
}

/** The staged tree laid over an existing target: what to rename where; conflicts refused first. */
async function planMerge(staging: string, root: string): Promise<[string, string][]> {
  const moves: [string, string][] = [];
  const walk = async (from: string, to: string, rel: string) => {
    for (const d of await readdir(from, { withFileTypes: true })) {
      const src = join(from, d.name);
      const dst = join(to, d.name);
      const childRel = rel === "" ? d.name : `${rel}/${d.name}`;
      const existing = await lstat(dst).catch(() => undefined);
      if (!existing) {
        moves.push([src, dst]);
        continue;
      }
      if (d.isDirectory()) {
        if (!existing.isDirectory()) {
          throw new EnvdError(Code.FailedPrecondition, `'${childRel}' exists in the target and is not a directory; the archive has a directory there`);
        }
        await walk(src, dst, childRel);
        continue;
      }
      if (existing.isDirectory()) {
        throw new EnvdError(Code.FailedPrecondition, `'${childRel}' is a directory in the target; the archive has a file or link there`);
      }
      moves.push([src, dst]);
    }
  };
  await walk(staging, root, "");
  return moves;
}

/** A target that does not exist yet: each top-level staged entry moves in whole. */
async function topLevel(staging: string, root: string): Promise<[string, string][]> {
  return (await readdir(staging)).map((name) => [join(staging, name), join(root, name)]);
}

/** The target, symlinks resolved; whether it exists (it must be a directory if it does). */
async function resolveTarget(target: string): Promise<{ root: string; exists: boolean }> {
  try {
    const root = await realpath(target);
    const st = await lstat(root);
    if (!st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path '${target}' is not a directory: a tar archive is extracted into a directory`);
    return { root, exists: true };
  } catch (err) {
    if (err instanceof EnvdError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") throw fromNodeError(err, `cannot extract into ${target}`);
    // A dangling symlink as the target is refused rather than followed somewhere unchecked.
    if (await lstat(target).then(() => true, () => false)) throw new EnvdError(Code.InvalidArgument, `path '${target}' is a dangling symlink`);
    return { root: target, exists: false };
  }
}

/** The closest existing ancestor of a path that does not exist (where staging can live). */
async function nearestDirectory(path: string): Promise<string> {
  for (let p = dirname(path); ; p = dirname(p)) {
    const st = await lstat(p).catch(() => undefined);
    if (st) {
      if (!st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path '${p}' is not a directory`);
      return realpath(p);
    }
    if (dirname(p) === p) return p;
  }
}

function asClientError(err: unknown, signal: AbortSignal, target: string): EnvdError {
  if (err instanceof EnvdError) return err;
  if (signal.aborted) return new EnvdError(Code.Canceled, "the client went away during the upload", { cause: err });
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const message = (err as Error).message ?? String(err);
  if (code.startsWith("Z_")) return new EnvdError(Code.InvalidArgument, `error decompressing request body: ${message}`, { cause: err });
  if (code.startsWith("E")) return fromNodeError(err, `cannot extract into ${target}`);
  // tar-stream's own errors: a truncated or malformed archive.
  return new EnvdError(Code.InvalidArgument, `invalid tar archive: ${message}`, { cause: err });
}
