/**
 * One watch: an inotify instance over a directory, or over a whole tree when recursive. Turns raw
 * inotify records into events named relative to the watched directory, keeps the tree's watches
 * in step with directories that appear, move and disappear, and reports every way the watch can
 * stop delivering (queue overflow, watch limit, the directory going away) instead of going silent.
 *
 * Runs inside the watch worker thread; the system calls are injected so it can be tested alone.
 */
import { join } from "node:path";
import {
  IN_CREATE,
  IN_DELETE,
  IN_DELETE_SELF,
  IN_DONT_FOLLOW,
  IN_IGNORED,
  IN_ISDIR,
  IN_MOVE_SELF,
  IN_MOVED_FROM,
  IN_MOVED_TO,
  IN_ONLYDIR,
  IN_Q_OVERFLOW,
  IN_UNMOUNT,
  OP_CHMOD,
  OP_CREATE,
  OP_REMOVE,
  OP_RENAME,
  OP_WRITE,
  opsOfMask,
  type RawEvent,
  WATCH_MASK,
} from "./inotify.ts";

export interface TreeSyscalls {
  /** inotify_add_watch: the wd, or -errno. */
  addWatch(path: string, mask: number): number;
  rmWatch(wd: number): void;
  /**
   * `path`'s entries (not following symlinks): whether each is a directory, and whether it is a
   * regular file with content; undefined if `path` is gone.
   */
  readDir(path: string): { name: string; isDir: boolean; hasData: boolean }[] | undefined;
}

/**
 * [name relative to the watched directory, OP_* bits, and for the arrival half of a rename inside
 * the tree the name it came from (paired by the kernel's cookie)]
 */
export type TreeEvent = [name: string, ops: number, from?: string];

/** Renames whose arrival half is still to come; the kernel queues the two halves back to back. */
const MAX_PENDING_RENAMES = 256;

export type TreeEnd =
  | { kind: "overflow" }
  | { kind: "watch-limit" }
  | { kind: "gone" }
  | { kind: "failed"; errno: number; path: string };

const ENOENT = 2;
const ENOTDIR = 20;
const ENOSPC = 28;
const EACCES = 13;

export class WatchTree {
  readonly root: string;
  readonly recursive: boolean;
  readonly #sys: TreeSyscalls;
  /** Paths left out with everything beneath them (no events, no watches); see exclude-globs.ts. */
  readonly #excluded: (rel: string) => boolean;
  readonly #relOf = new Map<number, string>();
  readonly #wdOf = new Map<string, number>();
  /** Names reported by a scan of a new directory, whose own CREATE may still be in the queue. */
  readonly #scanned = new Set<string>();
  /** Files with content reported by a scan, whose own WRITE may still be in the queue. */
  readonly #scannedWrites = new Set<string>();
  /** cookie → name, from IN_MOVED_FROM until its IN_MOVED_TO. */
  readonly #movedFrom = new Map<number, string>();
  #rootWd = -1;
  #end: TreeEnd | undefined;

  constructor(root: string, recursive: boolean, sys: TreeSyscalls, excluded: (rel: string) => boolean = () => false) {
    this.root = root;
    this.recursive = recursive;
    this.#sys = sys;
    this.#excluded = excluded;
  }

  /** Why the watch stopped, once it has. */
  get end(): TreeEnd | undefined {
    return this.#end;
  }

  get watchCount(): number {
    return this.#relOf.size;
  }

  /** Arms the watch (the whole tree when recursive). Returns the end on failure. */
  start(): TreeEnd | undefined {
    const wd = this.#sys.addWatch(this.root, WATCH_MASK | IN_ONLYDIR);
    if (wd < 0) {
      this.#end = -wd === ENOSPC ? { kind: "watch-limit" } : { kind: "failed", errno: -wd, path: this.root };
      return this.#end;
    }
    this.#rootWd = wd;
    this.#map(wd, "");
    if (this.recursive) this.#addSubtree("", undefined);
    return this.#end;
  }

  /** Feeds one read's records; returns the events to deliver, in order. */
  handle(records: RawEvent[]): TreeEvent[] {
    const out: TreeEvent[] = [];
    for (const r of records) {
      if (this.#end) break;
      if (r.mask & IN_Q_OVERFLOW) {
        this.#end = { kind: "overflow" };
        break;
      }
      const base = this.#relOf.get(r.wd);
      if (r.mask & IN_IGNORED) {
        if (base !== undefined) this.#unmap(r.wd);
        if (r.wd === this.#rootWd) this.#end = { kind: "gone" };
        continue;
      }
      if (base === undefined) continue; // a watch we already dropped
      if (r.name === "") {
        // The directory itself. A subdirectory's own events are reported by its parent instead.
        if (r.wd !== this.#rootWd) continue;
        const ops = opsOfMask(r.mask) & (OP_RENAME | OP_CHMOD | OP_REMOVE);
        if (ops) out.push([".", ops]);
        if (r.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) this.#end = { kind: "gone" };
        continue;
      }
      const rel = base === "" ? r.name : `${base}/${r.name}`;
      // An excluded name is never reported, and a directory of that name is never watched.
      if (this.#excluded(rel)) continue;
      let ops = opsOfMask(r.mask);
      if (ops & OP_CREATE && this.#scanned.delete(rel)) ops &= ~OP_CREATE;
      if (ops & OP_WRITE && this.#scannedWrites.delete(rel)) ops &= ~OP_WRITE;
      let from: string | undefined;
      if (r.mask & IN_MOVED_FROM && r.cookie !== 0) {
        if (this.#movedFrom.size >= MAX_PENDING_RENAMES) this.#movedFrom.clear();
        this.#movedFrom.set(r.cookie, rel);
      } else if (r.mask & IN_MOVED_TO && r.cookie !== 0) {
        from = this.#movedFrom.get(r.cookie);
        this.#movedFrom.delete(r.cookie);
      }
      if (ops) out.push(from === undefined ? [rel, ops] : [rel, ops, from]);
      if (this.recursive && r.mask & IN_ISDIR) {
        if (r.mask & (IN_MOVED_FROM | IN_DELETE)) this.#dropSubtree(rel, (r.mask & IN_MOVED_FROM) !== 0);
        if (r.mask & (IN_CREATE | IN_MOVED_TO)) this.#addSubtree(rel, out);
      }
    }
    return out;
  }

  /** The kernel queue is empty: every CREATE for names found by scans has been read by now. */
  drained(): void {
    this.#scanned.clear();
    this.#scannedWrites.clear();
    this.#movedFrom.clear();
  }

  /**
   * Watches `rel` and everything below it; with `out`, reports what is already inside as CREATE,
   * plus WRITE for files that already have content: those happened before the watch existed.
   */
  #addSubtree(rel: string, out: TreeEvent[] | undefined): void {
    const stack = [rel];
    while (stack.length > 0 && !this.#end) {
      const dir = stack.pop() as string;
      if (dir !== "") {
        if (this.#wdOf.has(dir)) continue;
        const wd = this.#sys.addWatch(join(this.root, dir), WATCH_MASK | IN_ONLYDIR | IN_DONT_FOLLOW);
        if (wd < 0) {
          const errno = -wd;
          if (errno === ENOENT || errno === ENOTDIR || errno === EACCES) continue; // gone, replaced or closed off
          this.#end = errno === ENOSPC ? { kind: "watch-limit" } : { kind: "failed", errno, path: join(this.root, dir) };
          return;
        }
        // The same directory reached twice (a bind mount inside the tree): watch it once.
        if (this.#relOf.has(wd)) continue;
        this.#map(wd, dir);
      }
      const entries = this.#sys.readDir(dir === "" ? this.root : join(this.root, dir));
      if (!entries) continue;
      for (const e of entries) {
        const child = dir === "" ? e.name : `${dir}/${e.name}`;
        if (this.#excluded(child)) continue;
        if (out) {
          out.push([child, e.hasData ? OP_CREATE | OP_WRITE : OP_CREATE]);
          this.#scanned.add(child);
          if (e.hasData) this.#scannedWrites.add(child);
        }
        if (e.isDir) stack.push(child);
      }
    }
  }

  /** Forgets the watches of `rel` and below (moved out of the tree or deleted). */
  #dropSubtree(rel: string, unwatch: boolean): void {
    const prefix = `${rel}/`;
    for (const [dir, wd] of [...this.#wdOf]) {
      if (dir !== rel && !dir.startsWith(prefix)) continue;
      this.#unmap(wd);
      if (unwatch) this.#sys.rmWatch(wd);
    }
  }

  #map(wd: number, rel: string): void {
    this.#relOf.set(wd, rel);
    this.#wdOf.set(rel, wd);
  }

  #unmap(wd: number): void {
    const rel = this.#relOf.get(wd);
    this.#relOf.delete(wd);
    if (rel !== undefined && this.#wdOf.get(rel) === wd) this.#wdOf.delete(rel);
  }
}
