/**
 * Gives memory back after a burst. Both runtimes keep most of their peak once a 1 GiB stream, a
 * transfer or a few hundred concurrent commands are over (../shared/research/runtime.md): on Node
 * the freed buffers stay in glibc's malloc heap (RSS 2× idle for good, measured by `npm run bench`);
 * Bun's collector and allocator give back on their own, but only eventually.
 *
 * A cheap loop watches the daemon's RSS. When it has grown well above the level after the last
 * trim and has stopped growing (the burst is over), it trims once: `malloc_trim(0)` through the
 * runtime's FFI (returns glibc's free pages; a no-op where there is nothing to return) and, on Bun,
 * a full collection first (`Bun.gc(true)`). Then the new RSS becomes the level to compare with, so
 * memory that is really in use is never trimmed over and over. Sampling RSS costs ~10 µs a tick.
 */
import { createRequire } from "node:module";
import type { Logger } from "../log.ts";

const MIB = 1024 * 1024;
export const TRIM_INTERVAL_MS = 2_000;
/** Growth above the post-trim level that is worth a trim. */
export const TRIM_GROWTH_BYTES = 16 * MIB;
/** Change between two ticks under which the RSS counts as settled. */
export const TRIM_SETTLED_BYTES = 2 * MIB;

export interface TrimState {
  /** RSS after the last trim, or the lowest seen since. */
  level: number;
  /** RSS at the previous tick. */
  previous: number;
}

/** The decision, pure: grown by `TRIM_GROWTH_BYTES` over the level and no longer moving. */
export function shouldTrim(state: TrimState, rss: number): boolean {
  return rss - state.level >= TRIM_GROWTH_BYTES && Math.abs(rss - state.previous) <= TRIM_SETTLED_BYTES;
}

type Trim = () => void;

/** The runtime's way to give memory back, or undefined when it has none (no FFI). */
export function loadTrim(): Trim | undefined {
  const require = createRequire(import.meta.url);
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  let mallocTrim: (() => unknown) | undefined;
  try {
    if (bun) {
      const ffi = require("bun:ffi") as {
        dlopen(p: string, d: object): { symbols: { malloc_trim(pad: bigint): number } };
      };
      const { symbols } = ffi.dlopen("libc.so.6", { malloc_trim: { args: ["u64"], returns: "i32" } });
      mallocTrim = () => symbols.malloc_trim(0n);
    } else {
      const ffi = requireQuietly(require, "node:ffi") as {
        dlopen(p: string, d: object): { functions: { malloc_trim(pad: bigint): number } };
      };
      const { functions } = ffi.dlopen("libc.so.6", { malloc_trim: { arguments: ["u64"], return: "i32" } });
      mallocTrim = () => functions.malloc_trim(0n);
    }
  } catch {
    // musl, FFI disabled, or no libc.so.6: Bun can still collect; Node has nothing to do
  }
  if (bun) {
    return () => {
      bun.gc(true);
      mallocTrim?.();
    };
  }
  return mallocTrim;
}

/** `node:ffi` without its one-time ExperimentalWarning on stderr (the daemon's logs are JSON). */
function requireQuietly(require: NodeJS.Require, id: string): unknown {
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if ((typeof warning === "string" ? warning : warning.message).includes("FFI")) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    return require(id);
  } finally {
    process.emitWarning = emit;
  }
}

export interface HeapTrimmerOptions {
  log: Logger;
  intervalMs?: number;
  /** Reads the RSS in bytes (tests pass a fake). */
  rss?: () => number;
  /** What a trim does (tests pass a fake); default `loadTrim()`. */
  trim?: Trim;
}

export class HeapTrimmer {
  readonly name = "heap-trimmer";
  readonly #opts: HeapTrimmerOptions;
  readonly #rss: () => number;
  readonly #trim: Trim | undefined;
  #timer: NodeJS.Timeout | undefined;
  #state: TrimState | undefined;
  /** Trims done so far. */
  trims = 0;

  constructor(opts: HeapTrimmerOptions) {
    this.#opts = opts;
    this.#rss = opts.rss ?? (() => process.memoryUsage.rss());
    this.#trim = opts.trim ?? loadTrim();
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Samples every interval. Idempotent; does nothing where the runtime cannot trim. */
  start(): void {
    if (this.#timer || !this.#trim) return;
    this.#timer = setInterval(() => this.tick(), this.#opts.intervalMs ?? TRIM_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#state = undefined;
  }

  /** One sample; trims when `shouldTrim` says so. Returns whether it trimmed. */
  tick(): boolean {
    const rss = this.#rss();
    const state = this.#state;
    if (!state) {
      this.#state = { level: rss, previous: rss };
      return false;
    }
    if (!shouldTrim(state, rss)) {
      this.#state = { level: Math.min(state.level, rss), previous: rss };
      return false;
    }
    const started = performance.now();
    this.#trim?.();
    const after = this.#rss();
    this.trims++;
    this.#state = { level: after, previous: after };
    this.#opts.log.debug("heap trimmed", {
      beforeMiB: Math.round(rss / MIB),
      afterMiB: Math.round(after / MIB),
      ms: Math.round(performance.now() - started),
    });
    return true;
  }
}
