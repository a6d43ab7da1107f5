/**
 * A directory as a tar stream (GET /files with a tar request, docs/compatibility.md "Beyond the
 * anchors"). The tree is walked here, depth first in byte order, without following symlinks;
 * tar-stream only encodes headers (ustar, with pax records for long or non-ASCII names).
 *
 * Each entry keeps its owner (uid/gid and their names), permission bits and mtime. Symlinks are
 * links (their target as written); a file with several links inside the tree is stored once and
 * the other names as hard links to it; FIFOs and devices are headers only; sockets are left out
 * (tar cannot hold them, GNU tar skips them too). Names are relative to the directory (`a.txt`,
 * `sub/`, `sub/b.txt`), so `tar -x -C dest` recreates its content in `dest`.
 *
 * Memory is bounded: a file is read in READ_CHUNK_BYTES pieces, and the next piece only once the
 * consumer took the last (tar-stream's entry sink returns false on write when the pack is full).
 * A file that shrinks while it is read is padded with zeros to the size in its header, one that
 * grows is cut at it (as GNU tar does), so the archive stays well formed.
 */
import type { Dirent, Stats } from "node:fs";
import { lstat, open, opendir, readlink } from "node:fs/promises";
import { basename, join } from "node:path";
import tarStream from "tar-stream";

type TarHeader = Partial<tarStream.Header> & { name: string };
import type { OwnerNames } from "../fs/entry-info.ts";
import { READ_CHUNK_BYTES } from "./download.ts";
import { noteTransferred } from "./gc-pacer.ts";

export interface PackOptions {
  names: OwnerNames;
  signal: AbortSignal;
  /** Names left out with everything below them (the daemon's own temporary files). */
  skip?: (name: string) => boolean;
  /** A file that changed size while it was read (archived anyway, with the size first seen). */
  onChanged?: (path: string, message: string) => void;
}

export interface PackStats {
  entries: number;
  bytes: number;
}

/**
 * The archive of `root` (a directory: its content; anything else: that one entry) as chunks.
 * Fails before the first chunk when `root` cannot be read; a failure later ends the iteration
 * with the error (the consumer can only cut its output).
 */
export async function* packTree(root: string, options: PackOptions, stats: PackStats = { entries: 0, bytes: 0 }): AsyncGenerator<Buffer> {
  const st = await lstat(root);
  const pack = tarStream.pack();
  const producing = produce(pack, root, st, options, stats).then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err as Error),
  );
  try {
    for await (const chunk of pack as AsyncIterable<Buffer>) yield chunk;
  } finally {
    if (!pack.destroyed) pack.destroy(new Error("archive abandoned"));
    await producing;
  }
}

async function produce(pack: tarStream.Pack, root: string, rootStat: Stats, options: PackOptions, stats: PackStats): Promise<void> {
  const owners = ownerCache(options.names);
  const links = new Map<string, string>();
  const add = (name: string, path: string, st: Stats) => entry(pack, name, path, st, owners, links, options, stats);
  if (!rootStat.isDirectory()) return void (await add(basename(root), root, rootStat));
  // Depth first in byte order, each directory's content right after its own header (GNU tar
  // sets a directory's mtime once the archive leaves it, so its content must not come later).
  // Iterative: one frame per open directory, its names read whole (names only) and sorted.
  const top = await readNames(root);
  const stack: { rel: string; path: string; names: string[]; next: number }[] = [{ rel: "", path: root, names: top, next: 0 }];
  while (stack.length > 0) {
    options.signal.throwIfAborted();
    const frame = stack[stack.length - 1] as (typeof stack)[number];
    if (frame.next >= frame.names.length) {
      stack.pop();
      continue;
    }
    const name = frame.names[frame.next++] as string;
    if (options.skip?.(name)) continue;
    const childPath = join(frame.path, name);
    const childRel = frame.rel === "" ? name : `${frame.rel}/${name}`;
    const st = await lstat(childPath).catch((err: unknown) => {
      if (isGone(err)) return undefined;
      throw err;
    });
    if (!st) continue;
    await add(childRel, childPath, st);
    if (!st.isDirectory()) continue;
    // Gone (or replaced) since it was listed: nothing left to archive there.
    const names = await readNames(childPath).catch((err: unknown) => {
      if (isGone(err)) return [];
      throw err;
    });
    stack.push({ rel: childRel, path: childPath, names, next: 0 });
  }
}

/** One entry's header (and content). Waits until tar-stream has taken it all. */
async function entry(
  pack: tarStream.Pack,
  name: string,
  path: string,
  st: Stats,
  owners: ReturnType<typeof ownerCache>,
  links: Map<string, string>,
  options: PackOptions,
  stats: PackStats,
): Promise<void> {
  const header: TarHeader = {
    name,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    uname: owners.user(st.uid),
    gname: owners.group(st.gid),
    mtime: st.mtime,
  };
  if (st.isDirectory()) return void (await finish(pack, { ...header, name: `${name}/`, type: "directory" }));
  if (st.isSymbolicLink()) {
    const target = await readlink(path).catch(() => undefined);
    if (target === undefined) return;
    return void (await finish(pack, { ...header, type: "symlink", linkname: target }));
  }
  if (st.isFIFO()) return void (await finish(pack, { ...header, type: "fifo" }));
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    const devmajor = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
    const devminor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
    const type = st.isCharacterDevice() ? "character-device" : "block-device";
    return void (await finish(pack, { ...header, type, devmajor, devminor }));
  }
  if (!st.isFile()) return; // a socket
  if (st.nlink > 1) {
    const key = `${st.dev}:${st.ino}`;
    const first = links.get(key);
    if (first !== undefined) return void (await finish(pack, { ...header, type: "link", linkname: first }));
    links.set(key, name);
  }
  const handle = await open(path, "r").catch((err: unknown) => {
    if (isGone(err)) return undefined;
    throw err;
  });
  if (!handle) return;
  try {
    const size = st.size;
    const done = deferred();
    const sink = pack.entry({ ...header, type: "file", size }, (err) => (err ? done.reject(err) : done.resolve()));
    let position = 0;
    while (position < size) {
      options.signal.throwIfAborted();
      const want = Math.min(READ_CHUNK_BYTES, size - position);
      const buffer = Buffer.allocUnsafe(want);
      const { bytesRead } = await handle.read(buffer, 0, want, position);
      if (bytesRead === 0) {
        options.onChanged?.(path, `file shrank by ${size - position} bytes while archived; padded with zeros`);
        await write(sink, Buffer.alloc(size - position));
        position = size;
        break;
      }
      position += bytesRead;
      noteTransferred(bytesRead);
      await write(sink, bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
    }
    sink.end(undefined);
    await done.promise;
    stats.entries++;
    stats.bytes += size;
  } finally {
    await handle.close();
  }
}

/** A header-only entry. */
async function finish(pack: tarStream.Pack, header: TarHeader): Promise<void> {
  const done = deferred();
  pack.entry(header, (err) => (err ? done.reject(err) : done.resolve()));
  await done.promise;
}

/** Writes one chunk into an entry sink, waiting for room (tar-stream backpressure). */
function write(sink: tarStream.Pack extends never ? never : ReturnType<tarStream.Pack["entry"]>, chunk: Buffer): Promise<void> | void {
  if (sink.write(chunk)) return;
  return new Promise<void>((resolve, reject) => {
    const onDrain = () => {
      sink.off("error", onError);
      resolve();
    };
    const onError = (err: Error) => {
      sink.off("drain", onDrain);
      reject(err);
    };
    sink.once("drain", onDrain);
    sink.once("error", onError);
  });
}

async function readNames(path: string): Promise<string[]> {
  const dir = await opendir(path, { bufferSize: 256 });
  const names: string[] = [];
  for await (const d of dir as AsyncIterable<Dirent>) names.push(d.name);
  // Byte order (as ListDir and GNU tar's --sort=name), not UTF-16 order.
  return names
    .map((name) => ({ name, bytes: Buffer.from(name) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((e) => e.name);
}

function ownerCache(names: OwnerNames) {
  const users = new Map<number, string>();
  const groups = new Map<number, string>();
  return {
    user(uid: number): string {
      let n = users.get(uid);
      if (n === undefined) {
        n = names.userName(uid);
        users.set(uid, n);
      }
      return n === String(uid) ? "" : n;
    },
    group(gid: number): string {
      let n = groups.get(gid);
      if (n === undefined) {
        n = names.groupName(gid);
        groups.set(gid, n);
      }
      return n === String(gid) ? "" : n;
    },
  };
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function deferred() {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The producer may fail before awaiting it; the rejection is reported through produce().
  promise.catch(() => {});
  return { promise, resolve, reject };
}
