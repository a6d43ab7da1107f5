/**
 * The temporary files the daemon writes for itself (an upload's `.e2b-upload-<hex>`, a compose's
 * `<dest>.e2b-compose.<uuid>.tmp`) and everything that must not show them.
 *
 * Uploads stay atomic (written beside the target, renamed over it when complete), but nobody should
 * see that: E2B's Go envd writes in place, and clients wait for what that produces. So:
 *
 * - Each temporary file is registered here by its exact name before it is created and released
 *   only after the watch thread has read every event the kernel queued for it (`barrier`). Names
 *   carry 64 random bits (or a UUID), so an exact name is ours; a user's own file that merely looks
 *   similar is never hidden.
 * - Watch events on a registered name are dropped (`rewriteWatchEvents`), and the rename that
 *   commits it becomes what Go's in-place write makes the kernel report for the target: a new
 *   file `create`, `chmod` (the chown), `write` (none for an empty file); an existing one
 *   `chmod`, `write` (the chown, then O_TRUNC and the data).
 * - ListDir and Stat skip registered names (`isOwnTempName`).
 * - A crash leaves temporary files behind; each one's path is appended to a journal before the
 *   file is created (`<stateDir>/uploads-<pid>-<starttime>.journal`), and at start the daemon
 *   removes what the journals of dead daemons name (`sweepLeftovers`): only paths it wrote itself,
 *   only regular files whose name still has our pattern. A journal is emptied whenever no upload is
 *   in flight, so it stays small.
 */
import { closeSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { basename, join } from "node:path";
import type { Logger } from "../log.ts";
import { OP_CHMOD, OP_CREATE, OP_WRITE } from "./inotify.ts";

export const UPLOAD_TEMP_PREFIX = ".e2b-upload-";
/** Names we create: `.e2b-upload-<16 hex>` and `<name>.e2b-compose.<uuid>.tmp`. */
const OWN_NAME = /^(\.e2b-upload-[0-9a-f]{16}|.+\.e2b-compose\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp)$/;

export interface OwnTemp {
  /** Absolute path of the temporary file. */
  readonly path: string;
  /** Whether the target existed when the write began (decides the events its commit reports). */
  existed: boolean;
  /** Bytes written (an empty new file reports no `write`, as with Go's in-place write). */
  bytes: number;
}

/** [name relative to the watch, OP_* bits, name the entry was renamed from (same cookie)] */
export type RawWatchEvent = [name: string, ops: number, from?: string];

class OwnTempFiles {
  readonly #byName = new Map<string, OwnTemp>();
  #barrier: () => Promise<void> = () => Promise.resolve();
  #journal: { fd: number; path: string } | undefined | null;
  #stateDir: string | undefined;
  #log: Logger | undefined;

  get size(): number {
    return this.#byName.size;
  }

  /** Where journals live; set at daemon start (undefined: no journal, no sweep). */
  configure(opts: { stateDir: string | undefined; log: Logger }): void {
    this.#stateDir = opts.stateDir;
    this.#log = opts.log;
  }

  /** The watch engine's "every event queued so far has been read" promise. */
  setBarrier(barrier: () => Promise<void>): void {
    this.#barrier = barrier;
  }

  /** Registers a temporary file before it is created. */
  register(path: string, existed: boolean): OwnTemp {
    const entry: OwnTemp = { path, existed, bytes: 0 };
    this.#byName.set(basename(path), entry);
    this.#journalAppend(path);
    return entry;
  }

  /** Forgets it once the watch thread has read its events (it is gone or renamed by now). */
  release(entry: OwnTemp): void {
    void this.#barrier()
      .catch(() => {})
      .then(() => {
        const name = basename(entry.path);
        if (this.#byName.get(name) === entry) this.#byName.delete(name);
        if (this.#byName.size === 0) this.#journalReset();
      });
  }

  isOwnTempName(name: string): boolean {
    return this.#byName.size > 0 && this.#byName.has(name);
  }

  /** Watch events with our temporary files hidden and their commits shown as in-place writes. */
  rewriteWatchEvents(events: RawWatchEvent[]): [string, number][] {
    if (this.#byName.size === 0) return events.map(([name, ops]) => [name, ops]);
    const out: [string, number][] = [];
    for (const [name, ops, from] of events) {
      if (this.#byName.has(basename(name))) continue;
      const committed = from !== undefined ? this.#byName.get(basename(from)) : undefined;
      if (committed) {
        const inPlace = committed.existed ? OP_CHMOD | OP_WRITE : OP_CREATE | OP_CHMOD | (committed.bytes > 0 ? OP_WRITE : 0);
        // The kernel says CREATE for the rename; what is left of it after a scan already reported it is kept out.
        out.push([name, ops & OP_CREATE ? inPlace : ops & ~OP_CREATE]);
        continue;
      }
      out.push([name, ops]);
    }
    return out.filter(([, ops]) => ops !== 0);
  }

  #journalAppend(path: string): void {
    if (this.#journal === undefined) this.#journal = this.#openJournal();
    if (!this.#journal) return;
    try {
      writeSync(this.#journal.fd, `${path}\n`);
    } catch (err) {
      this.#log?.warn("cannot write the upload journal; leftovers of a crash will not be swept", { path: this.#journal.path, err });
      closeSync(this.#journal.fd);
      this.#journal = null;
    }
  }

  #journalReset(): void {
    if (!this.#journal) return;
    try {
      ftruncateSync(this.#journal.fd, 0);
    } catch {
      // the next sweep finds paths that are gone: harmless
    }
  }

  #openJournal(): { fd: number; path: string } | null {
    if (!this.#stateDir) return null;
    const path = join(this.#stateDir, `uploads-${process.pid}-${processStartTime(process.pid) ?? 0}.journal`);
    try {
      mkdirSync(this.#stateDir, { recursive: true, mode: 0o700 });
      return { fd: openSync(path, "a", 0o600), path };
    } catch (err) {
      this.#log?.warn("cannot open the upload journal; leftovers of a crash will not be swept", { path, err });
      return null;
    }
  }
}

/** The daemon's one registry (a module singleton: writers in transfer/, readers in fs/ and the watch engine). */
export const ownTempFiles = new OwnTempFiles();

export function isOwnTempName(name: string): boolean {
  return ownTempFiles.isOwnTempName(name);
}

/**
 * Removes the temporary files that daemons which are no longer running left behind, as their
 * journals list them, and deletes those journals. A journal of a daemon still running (its pid
 * alive with the same start time) is left alone. Returns the paths removed.
 */
export function sweepLeftovers(stateDir: string | undefined, log: Logger): string[] {
  if (!stateDir) return [];
  let names: string[];
  try {
    names = readdirSync(stateDir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /^uploads-(\d+)-(\d+)\.journal$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || String(processStartTime(pid)) === m[2]) continue; // alive: its uploads are in flight
    const journal = join(stateDir, name);
    let paths: string[] = [];
    try {
      paths = readFileSync(journal, "utf8").split("\n").filter(Boolean);
    } catch {
      continue;
    }
    for (const path of new Set(paths)) {
      if (!OWN_NAME.test(basename(path))) continue;
      try {
        if (!lstatSync(path).isFile()) continue;
        unlinkSync(path);
        removed.push(path);
      } catch {
        // gone already (committed or cleaned up): nothing to do
      }
    }
    try {
      unlinkSync(journal);
    } catch {}
  }
  if (removed.length > 0) log.info("removed temporary files left by an earlier run", { count: removed.length, paths: removed.slice(0, 16) });
  return removed;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), or undefined when there is no such process. */
function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
  } catch {
    return undefined;
  }
}
