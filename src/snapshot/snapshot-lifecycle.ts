/**
 * Snapshot and restore (docs/protocol.md §4.6, §4.7, §7.4): what the daemon does before the VM is
 * paused and snapshotted, and once it runs again — possibly as one of several clones, on another
 * host, minutes later.
 *
 * Prepare (`POST /snapshot/prepare`, or `POST /freeze`):
 *   keep-alive off and idle keep-alive connections closed (their FINs reach the host before the
 *   pause); every background loop in the LoopRegistry stopped (port scanner, samplers, pollers,
 *   the page-cache reclaimer: nothing allocates or holds a half-done syscall when vCPUs stop);
 *   filesystems synced; the page cache dropped when asked. The connections open at that moment
 *   are remembered: after a restore their peers are gone.
 *
 * Restore (once, on the first host contact after prepare — `/health` or `/init` after
 * /snapshot/prepare, `/init` after /freeze — or when the wall clock jumps while prepared):
 *   the remembered connections are destroyed (zombies otherwise: an idle keep-alive socket would
 *   stay ESTABLISHED forever), keep-alive is back on, the kernel's random pool is reseeded (clones
 *   must not share it), the clock is resynced from whatever reference the VM has, and the loops
 *   start again. Processes, their output history and new connections are untouched.
 *
 * `/unfreeze` (the pause was rolled back) resumes without the restore steps.
 */
import { execFile } from "node:child_process";
import type { Socket } from "node:net";
import type { Logger } from "../log.ts";
import type { Libc } from "../sys/libc.ts";
import type { ClockResyncResult } from "./clock-resync.ts";
import type { LoopRegistry } from "./loop-registry.ts";
import type { ReseedReport } from "./entropy.ts";
import type { TrimResult } from "./fstrim.ts";

/** The parts of the HTTP server the lifecycle drives. */
export interface ConnectionControl {
  readonly connections: ReadonlyMap<Socket, unknown>;
  /** HTTP/1.1 keep-alive for new responses. */
  keepAlive: boolean;
  closeIdleConnections(): void;
}

export type PrepareSource = "snapshot" | "freeze";
export type RestoreTrigger = "health" | "init" | "clock-jump";

export interface PrepareReport {
  source: PrepareSource;
  loopsStopped: string[];
  connections: number;
  synced: boolean;
  droppedCaches: boolean;
  /** fstrim's outcome, when asked for. */
  trim?: TrimResult;
  ms: number;
}

export interface RestoreReport {
  trigger: RestoreTrigger;
  closedConnections: number;
  loopsStarted: string[];
  reseed: ReseedReport;
  clock: ClockResyncResult;
  ms: number;
}

export interface SnapshotLifecycleDeps {
  log: Logger;
  loops: LoopRegistry;
  server: ConnectionControl;
  /** Flushes dirty data to disk (sync(2)). */
  sync(): Promise<void>;
  /** Sync, then drop the page cache. */
  dropCaches(reason: string): Promise<void>;
  /** fstrim of the mounted filesystems, bounded in time (snapshot/fstrim.ts). */
  trim?(): Promise<TrimResult>;
  reseed(): ReseedReport;
  resyncClock(): Promise<ClockResyncResult>;
  /** A wall-clock step larger than this counts as a jump. */
  clockJumpMs?: number;
  clockCheckMs?: number;
}

export const CLOCK_JUMP_MS = 2_000;
const CLOCK_CHECK_MS = 1_000;

export class SnapshotLifecycle {
  readonly #deps: SnapshotLifecycleDeps;
  #pending: { source: PrepareSource; sockets: Set<Socket> } | undefined;
  #preparing: Promise<PrepareReport> | undefined;
  #restoring: Promise<RestoreReport> | undefined;
  #clockTimer: NodeJS.Timeout | undefined;
  #clockOffset = 0;
  /** Restores run so far, and the last one's report. */
  restores = 0;
  lastRestore: RestoreReport | undefined;
  /** Wall-clock jumps seen so far. */
  clockJumps = 0;

  constructor(deps: SnapshotLifecycleDeps) {
    this.#deps = deps;
  }

  /** What prepared the pending snapshot, if one is pending. */
  get pending(): PrepareSource | undefined {
    return this.#pending?.source;
  }

  /** Quiesces for a snapshot (see the file comment). Calling it again while prepared repeats the steps. */
  async prepare(source: PrepareSource, opts: { dropCaches?: boolean; trim?: boolean } = {}): Promise<PrepareReport> {
    await this.#restoring;
    const previous = this.#preparing;
    const run = (async () => {
      await previous?.catch(() => {});
      const { log, loops, server } = this.#deps;
      const started = performance.now();
      server.keepAlive = false;
      server.closeIdleConnections();
      const loopsStopped = await loops.stopAll();
      let synced = true;
      try {
        await this.#deps.sync();
      } catch (err) {
        synced = false;
        log.warn("sync before snapshot failed", { err: String(err) });
      }
      // After the sync, so the pages it cleaned can go too.
      if (opts.dropCaches) await this.#deps.dropCaches("snapshot");
      const trim = opts.trim && this.#deps.trim ? await this.#deps.trim() : undefined;
      // Whatever is still open now is on the wrong side of the snapshot.
      const sockets = new Set(this.#pending?.sockets ?? []);
      for (const s of server.connections.keys()) sockets.add(s);
      const kept = this.#pending?.source === "snapshot" ? "snapshot" : source;
      this.#pending = { source: kept, sockets };
      const report: PrepareReport = {
        source,
        loopsStopped,
        connections: sockets.size,
        synced,
        droppedCaches: opts.dropCaches === true,
        ...(trim ? { trim } : {}),
        ms: Math.round(performance.now() - started),
      };
      log.info("prepared for snapshot", { ...report });
      return report;
    })();
    this.#preparing = run;
    try {
      return await run;
    } finally {
      if (this.#preparing === run) this.#preparing = undefined;
    }
  }

  /**
   * The host reached us: `/health` or `/init`. Runs the restore once if a snapshot was prepared
   * (after /freeze only /init counts: the host's health checks continue while it pauses).
   * `socket` is the caller's connection, never closed here.
   */
  async onHostContact(kind: "health" | "init", socket?: Socket): Promise<RestoreReport | undefined> {
    if (this.#restoring !== undefined) return this.#restoring;
    await this.#preparing?.catch(() => {});
    // Another contact may have started the restore meanwhile: wait for that one.
    if (this.#restoring !== undefined) return this.#restoring;
    const pending = this.#pending;
    if (!pending || (pending.source === "freeze" && kind === "health")) return undefined;
    return this.#restore(kind, socket);
  }

  /** The pause did not happen (`/unfreeze`): loops and keep-alive come back, connections stay. */
  async resume(): Promise<void> {
    await this.#preparing?.catch(() => {});
    if (!this.#pending) return;
    this.#pending = undefined;
    this.#deps.server.keepAlive = true;
    const loops = this.#deps.loops.startAll();
    this.#deps.log.info("snapshot cancelled; resumed", { loopsStarted: loops });
  }

  /** Watches for wall-clock steps (Date.now() against the monotonic clock). Idempotent. */
  startClockWatch(): void {
    if (this.#clockTimer) return;
    this.#clockOffset = Date.now() - performance.now();
    this.#clockTimer = setInterval(() => this.checkClock(), this.#deps.clockCheckMs ?? CLOCK_CHECK_MS);
    this.#clockTimer.unref();
  }

  stopClockWatch(): void {
    if (this.#clockTimer) clearInterval(this.#clockTimer);
    this.#clockTimer = undefined;
  }

  /**
   * One check of the wall clock against the monotonic clock. A step means someone set the time:
   * after a restore that is the host (via /init) or chrony. While prepared, that is the restore
   * signal; otherwise only the random pool is reseeded (it may be a restore nobody announced).
   */
  checkClock(): void {
    const offset = Date.now() - performance.now();
    const delta = offset - this.#clockOffset;
    this.#clockOffset = offset;
    if (Math.abs(delta) <= (this.#deps.clockJumpMs ?? CLOCK_JUMP_MS)) return;
    this.clockJumps++;
    const pending = this.#pending !== undefined;
    this.#deps.log.warn("wall clock jumped", { deltaMs: Math.round(delta), pending });
    if (pending) {
      void this.#restore("clock-jump", undefined).catch(() => {});
      return;
    }
    const reseed = this.#deps.reseed();
    this.#deps.log.info("random pool reseeded after a clock jump", { ...reseed });
  }

  #restore(trigger: RestoreTrigger, except: Socket | undefined): Promise<RestoreReport> {
    if (this.#restoring !== undefined) return this.#restoring;
    const pending = this.#pending;
    this.#pending = undefined;
    const run = (async () => {
      const { log, server, loops } = this.#deps;
      const started = performance.now();
      let closedConnections = 0;
      for (const socket of pending?.sockets ?? []) {
        if (socket === except || socket.destroyed || !server.connections.has(socket)) continue;
        socket.destroy();
        closedConnections++;
      }
      server.keepAlive = true;
      const reseed = this.#deps.reseed();
      let clock: ClockResyncResult;
      try {
        clock = await this.#deps.resyncClock();
      } catch (err) {
        clock = { source: "none", stepped: false, error: String(err) };
      }
      const loopsStarted = loops.startAll();
      // The clock may have been stepped just now: that step is not a new jump.
      this.#clockOffset = Date.now() - performance.now();
      const report: RestoreReport = {
        trigger,
        closedConnections,
        loopsStarted,
        reseed,
        clock,
        ms: Math.round(performance.now() - started),
      };
      this.restores++;
      this.lastRestore = report;
      log.info("restored after snapshot", { ...report });
      return report;
    })();
    this.#restoring = run;
    return run.finally(() => {
      if (this.#restoring === run) this.#restoring = undefined;
    });
  }
}

/**
 * Flushes every filesystem: `sync` from PATH (async, the event loop keeps serving), else sync(2)
 * through FFI (blocks the loop while it runs), else nothing.
 */
export function syncFilesystems(libc: Libc | undefined, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("sync", [], { env: { PATH: path }, timeout: 60_000 }, (err) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === "ENOENT" && libc) {
        libc.sync();
        return resolve();
      }
      reject(err);
    });
  });
}
