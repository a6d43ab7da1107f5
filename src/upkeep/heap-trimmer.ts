/**
 * Gives memory back after a burst. Both runtimes keep most of their peak once a 1 GiB stream, a
 * transfer or a few hundred commands are over, measured with
 * `npm run bench` (docs/benchmarks.md):
 *  - Node: the freed buffers stay in glibc's malloc heap (RSS ~1.8× idle for good);
 *  - Bun: nothing is collected while the daemon is idle, and a child's pipe buffers (64 KiB each)
 *    are only released by the second full collection after the ProcessHandle becomes garbage; after
 *    1,000 commands, 128 MiB stayed "external" until something forced two collections.
 *
 * A cheap loop samples the daemon's RSS (~10 µs). When it has grown well above the level after
 * the last trim and has stopped moving (the burst is over), it trims: on Bun two full collections
 * (`Bun.gc(true)` twice), and JSC's shrinkFootprint when nothing is in flight (bunTrim); on Node
 * a full V8 collection (`gc` exposed at run time, sys/node-gc.ts), which also shrinks the young
 * generation V8 grew during the burst;
 * then `malloc_trim(0)` through the runtime's FFI on both. The new
 * RSS becomes the level to compare with, so memory really in use is not trimmed over and over.
 * Memory can also become garbage later, and while RSS stays well above the lowest RSS ever seen it
 * trims again: once 32 of the connections open at the last trim have closed (a burst's clients
 * leave a few seconds after it; the SDK 4 s after a connection's last use), backing off while that
 * frees little; once 8 MiB of ended processes' output has been let go (their 30 s are over), at
 * most every 10 s; and otherwise 30 s after the last trim, backing off to 8 min while tries free
 * nothing.
 */
import type { Logger } from "../log.ts";
import { loadMallocTrim } from "../sys/libc.ts";
import { exposeNodeGc } from "../sys/node-gc.ts";

const MIB = 1024 * 1024;
export const TRIM_INTERVAL_MS = 2_000;
/** Growth above the post-trim level that is worth a trim. */
export const TRIM_GROWTH_BYTES = 16 * MIB;
/** Change between two ticks under which the RSS counts as settled. */
export const TRIM_SETTLED_BYTES = 2 * MIB;
/** A trim that frees less than this was not worth it: the next retry waits twice as long. */
export const TRIM_USEFUL_BYTES = 4 * MIB;
export const TRIM_RETRY_MIN_MS = 30_000;
export const TRIM_RETRY_MAX_MS = 8 * 60_000;

export interface TrimState {
  /** RSS after the last trim, or the lowest seen since. */
  level: number;
  /** The lowest RSS ever seen (the idle daemon). */
  baseline: number;
  /** RSS at the previous tick. */
  previous: number;
  /** When the last trim ran (ms, any monotonic clock). */
  lastTrimAt: number;
  /** How long after the last trim a retry may run. */
  retryMs: number;
  /** Open connections at the last trim (the most seen since, while they only grow). */
  connections: number;
  /**
   * How long after the last trim a "closed" trim may run: 0, or after a closed trim that freed
   * little, 30 s doubling to 8 min (a client that opens and closes dozens of connections again
   * and again must not cost a collection each time).
   */
  closedWaitMs: number;
  /** The `released` counter at the last trim. */
  released: number;
}

export type TrimReason = "burst" | "retry" | "closed" | "released";

/** This many connections closed since the last trim, with RSS still well above idle: trim again. */
export const TRIM_CLOSED_CONNECTIONS = 32;
/** This much memory let go since the last trim (ended processes' output), with RSS well above idle: trim again. */
export const TRIM_RELEASED_BYTES = 8 * MIB;
/** ...but not sooner than this after the last trim (a steady stream of ending commands is not a burst). */
export const TRIM_RELEASED_MIN_MS = 10_000;

/**
 * The decision, pure. Only when RSS has settled: "burst" when it grew `TRIM_GROWTH_BYTES` above
 * the level. Otherwise only when it is that far above the baseline: "released" when
 * `TRIM_RELEASED_BYTES` more have been let go since the last trim, `TRIM_RELEASED_MIN_MS` after it;
 * "closed" when `TRIM_CLOSED_CONNECTIONS` of the connections open at the last trim have closed
 * since (what a burst's clients held is garbage only then), `closedWaitMs` after it; "retry" once
 * `retryMs` has passed.
 */
export function shouldTrim(state: TrimState, rss: number, now: number, connections = 0, released = 0): TrimReason | undefined {
  if (Math.abs(rss - state.previous) > TRIM_SETTLED_BYTES) return undefined;
  if (rss - state.level >= TRIM_GROWTH_BYTES) return "burst";
  if (rss - state.baseline < TRIM_GROWTH_BYTES) return undefined;
  if (released - state.released >= TRIM_RELEASED_BYTES && now - state.lastTrimAt >= TRIM_RELEASED_MIN_MS) return "released";
  if (state.connections - connections >= TRIM_CLOSED_CONNECTIONS && now - state.lastTrimAt >= state.closedWaitMs) return "closed";
  if (now - state.lastTrimAt >= state.retryMs) return "retry";
  return undefined;
}

/** The state after a trim that took RSS from `before` to `after`. */
export function afterTrim(
  state: TrimState,
  reason: TrimReason,
  before: number,
  after: number,
  now: number,
  connections = 0,
  released = state.released,
): TrimState {
  const useful = before - after >= TRIM_USEFUL_BYTES;
  const retryMs = reason !== "retry" || useful ? TRIM_RETRY_MIN_MS : Math.min(state.retryMs * 2, TRIM_RETRY_MAX_MS);
  const closedWaitMs = useful
    ? 0
    : reason === "closed"
      ? Math.min(Math.max(state.closedWaitMs * 2, TRIM_RETRY_MIN_MS), TRIM_RETRY_MAX_MS)
      : state.closedWaitMs;
  return { level: after, baseline: Math.min(state.baseline, after), previous: after, lastTrimAt: now, retryMs, connections, closedWaitMs, released };
}

/** One trim; Bun's says whether it also shrank JSC's heap. */
type Trim = () => { shrunk: boolean } | undefined;

/** What the Bun branch of a trim uses of `Bun`. */
export interface BunHeap {
  gc(force: boolean): void;
  shrink(): void;
}

/**
 * The runtime's way to give memory back, or undefined when it has none (no FFI). `quiet` says
 * whether no request is in flight (see bunTrim).
 */
export function loadTrim(quiet: () => boolean = () => false): Trim | undefined {
  const bun = (globalThis as { Bun?: BunHeap }).Bun;
  // Bun can always collect, so malloc_trim is bound on the first trim, not at start: binding
  // libc through bun:ffi costs ~2 MiB resident, paid by every idle VM that never trims.
  if (bun) return bunTrim(bun, quiet, loadMallocTrim);
  const mallocTrim = loadMallocTrim();
  const gc = exposeNodeGc();
  if (!gc && !mallocTrim) return undefined;
  return () => {
    gc?.({ type: "major" });
    mallocTrim?.();
    return undefined;
  };
}

/**
 * Bun's trim: two full collections (native-backed objects such as pipe buffers are finalized by
 * one and freed by the next); when `quiet`, JSC's shrinkFootprint (`Bun.shrink()`), which frees
 * more (fuzz burst: 1.81x idle 30 s later without it, 1.50x with it) but, run while responses were
 * streaming, stalled them for good mid-output (2 of 4 drop-and-resume runs in CI, 1 of 3
 * locally; the cause inside Bun was not found): so only when `quiet` says nothing is going on
 * (daemon.ts: no request or upgrade in flight, no watcher, no relayed port-forward connection);
 * then malloc_trim, bound on the first trim.
 */
export function bunTrim(bun: BunHeap, quiet: () => boolean, bindMallocTrim: () => (() => void) | undefined): Trim {
  let mallocTrim: (() => void) | undefined;
  let bound = false;
  return () => {
    if (!bound) {
      mallocTrim = bindMallocTrim();
      bound = true;
    }
    bun.gc(true);
    bun.gc(true);
    const shrunk = quiet();
    if (shrunk) bun.shrink();
    mallocTrim?.();
    return { shrunk };
  };
}

export interface HeapTrimmerOptions {
  log: Logger;
  intervalMs?: number;
  /** Reads the RSS in bytes (tests pass a fake). */
  rss?: () => number;
  /** Monotonic ms (tests pass a fake). */
  now?: () => number;
  /** What a trim does (tests pass a fake); default `loadTrim(quiet)`. */
  trim?: Trim;
  /** True while no request is in flight (the server's `quiet`); Bun then also shrinks its heap. */
  quiet?: () => boolean;
  /** Open connections now (the server's); their closing after a burst can make a trim worth it. */
  connections?: () => number;
  /** Bytes let go so far, all time (the process table's forgotten output): a jump makes a trim worth it. */
  released?: () => number;
  /**
   * Runs just before each trim and says how many records it packed: the process table packs its
   * ended records then (process-table.ts), so that the collection frees what they held.
   */
  beforeTrim?: () => number;
}

export class HeapTrimmer implements Disposable {
  readonly name = "heap-trimmer";
  readonly #opts: HeapTrimmerOptions;
  readonly #rss: () => number;
  readonly #now: () => number;
  #trim: Trim | undefined;
  #trimLoaded: boolean;
  #timer: NodeJS.Timeout | undefined;
  #state: TrimState | undefined;
  /** Trims done so far. */
  trims = 0;

  constructor(opts: HeapTrimmerOptions) {
    this.#opts = opts;
    this.#rss = opts.rss ?? (() => process.memoryUsage.rss());
    this.#now = opts.now ?? (() => performance.now());
    this.#trim = opts.trim;
    this.#trimLoaded = opts.trim !== undefined;
  }

  /** `loadTrim()` on first use, not in the constructor (it binds libc and sets a V8 flag). */
  #trimmer(): Trim | undefined {
    if (!this.#trimLoaded) {
      this.#trim = loadTrim(this.#opts.quiet);
      this.#trimLoaded = true;
    }
    return this.#trim;
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Samples every interval. Idempotent; does nothing where the runtime cannot trim. */
  start(): void {
    if (this.#timer || !this.#trimmer()) return;
    this.#timer = setInterval(() => this.tick(), this.#opts.intervalMs ?? TRIM_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#state = undefined;
  }

  /** Shutdown: stop(). Idempotent. */
  [Symbol.dispose](): void {
    this.stop();
  }

  /** One sample; trims when `shouldTrim` says so. Returns why it trimmed, if it did. */
  tick(): TrimReason | undefined {
    const rss = this.#rss();
    const now = this.#now();
    const connections = this.#opts.connections?.() ?? 0;
    const released = this.#opts.released?.() ?? 0;
    const state = this.#state;
    if (!state) {
      this.#state = { level: rss, baseline: rss, previous: rss, lastTrimAt: now, retryMs: TRIM_RETRY_MIN_MS, connections, closedWaitMs: 0, released };
      this.#opts.log.debug("heap trimmer sampling", { rssMiB: Math.round(rss / MIB) });
      return undefined;
    }
    const reason = shouldTrim(state, rss, now, connections, released);
    if (!reason) {
      this.#state = {
        ...state,
        level: Math.min(state.level, rss),
        baseline: Math.min(state.baseline, rss),
        previous: rss,
        connections: Math.max(state.connections, connections),
      };
      return undefined;
    }
    const packed = this.#opts.beforeTrim?.();
    const shrunk = this.#trimmer()?.()?.shrunk;
    const after = this.#rss();
    this.trims++;
    this.#state = afterTrim(state, reason, rss, after, now, connections, released);
    this.#opts.log.debug("heap trimmed", {
      reason,
      connections,
      ...(packed !== undefined ? { packed } : {}),
      ...(shrunk !== undefined ? { shrunk } : {}),
      beforeMiB: Math.round(rss / MIB),
      afterMiB: Math.round(after / MIB),
      ms: Math.round(this.#now() - now),
    });
    return reason;
  }
}
