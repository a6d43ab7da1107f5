/**
 * Page-cache reclaimer (seed 003): when guest memory counted with the page cache is more than
 * 80 % used, write `1` to /proc/sys/vm/drop_caches so clean cache pages go back to the free pool,
 * where a balloon (or a snapshot that skips free pages) can return them to the host. Without it a
 * guest that once read a big file keeps that memory forever as far as the host can tell.
 *
 * "Used" here is MemTotal − MemFree (the page cache counts as used), because that is what the host
 * pays for; /metrics' `mem_used` (total − available) would never come down by dropping caches.
 * Only when the droppable cache (Buffers + Cached − Shmem) is worth it (≥ 64 MiB or 5 % of RAM)
 * and at most once a minute, so a build that streams through files is not thrashed.
 *
 * Dirty pages cannot be dropped: filesystems are synced first. The loop is registered with the
 * snapshot loop registry: it is stopped (and an in-flight run awaited) before a snapshot.
 */
import { readFile, writeFile } from "node:fs/promises";
import type { Logger } from "../log.ts";

export const RECLAIM_THRESHOLD_PCT = 80;
export const RECLAIM_INTERVAL_MS = 10_000;
export const RECLAIM_COOLDOWN_MS = 60_000;
const MIB = 1024 * 1024;
const MIN_RECLAIMABLE_BYTES = 64 * MIB;
const MIN_RECLAIMABLE_FRACTION = 0.05;

export interface MemInfo {
  total: number;
  free: number;
  available: number;
  /** Buffers + Cached − Shmem: page cache the kernel can drop (once clean). */
  reclaimable: number;
}

/** Bytes from /proc/meminfo text; undefined without MemTotal. */
export function parseMeminfo(text: string): MemInfo | undefined {
  const kb = (name: string): number | undefined => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb("MemTotal");
  if (!total) return undefined;
  const free = kb("MemFree") ?? 0;
  const cache = (kb("Buffers") ?? 0) + (kb("Cached") ?? 0) - (kb("Shmem") ?? 0);
  return { total, free, available: kb("MemAvailable") ?? free, reclaimable: Math.max(0, cache) };
}

export function usedPercent(m: MemInfo): number {
  return ((m.total - m.free) / m.total) * 100;
}

/** The decision, pure: above the threshold and enough droppable cache to be worth a drop. */
export function shouldReclaim(m: MemInfo, thresholdPct = RECLAIM_THRESHOLD_PCT): boolean {
  if (usedPercent(m) <= thresholdPct) return false;
  return m.reclaimable >= Math.min(MIN_RECLAIMABLE_BYTES, m.total * MIN_RECLAIMABLE_FRACTION);
}

export interface ReclaimerOptions {
  log: Logger;
  /** ≤ 0 or > 100 disables the loop (drops on request still work). */
  thresholdPct?: number;
  intervalMs?: number;
  cooldownMs?: number;
  meminfoPath?: string;
  dropCachesPath?: string;
  /** Flushes dirty pages first (sync). */
  sync: () => Promise<void>;
}

export class PageCacheReclaimer {
  readonly name = "page-cache-reclaimer";
  readonly #opts: ReclaimerOptions;
  readonly #threshold: number;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<unknown> | undefined;
  #lastDropAt = Number.NEGATIVE_INFINITY;
  /** Drops done so far (loop and requested). */
  drops = 0;

  constructor(opts: ReclaimerOptions) {
    this.#opts = opts;
    this.#threshold = opts.thresholdPct ?? RECLAIM_THRESHOLD_PCT;
  }

  get enabled(): boolean {
    return this.#threshold > 0 && this.#threshold <= 100;
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Checks now and then every interval. Idempotent. */
  start(): void {
    if (this.#timer || !this.enabled) return;
    this.#timer = setInterval(() => void this.tick(), this.#opts.intervalMs ?? RECLAIM_INTERVAL_MS);
    this.#timer.unref();
    void this.tick();
  }

  /** Stops the loop and waits for a run in progress (a snapshot must not catch it half-way). */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  /** One check; drops the cache when `shouldReclaim` says so and the cooldown has passed. */
  async tick(): Promise<boolean> {
    if (this.#inFlight !== undefined) return false;
    const run = (async () => {
      let info: MemInfo | undefined;
      try {
        info = parseMeminfo(await readFile(this.#opts.meminfoPath ?? "/proc/meminfo", "utf8"));
      } catch {
        return false;
      }
      if (!info || !shouldReclaim(info, this.#threshold)) return false;
      if (performance.now() - this.#lastDropAt < (this.#opts.cooldownMs ?? RECLAIM_COOLDOWN_MS)) return false;
      await this.#drop("threshold", info);
      return true;
    })();
    this.#inFlight = run;
    try {
      return await run;
    } finally {
      this.#inFlight = undefined;
    }
  }

  /** Sync, then drop the page cache now (snapshot prepare with reclaim). */
  async dropNow(reason: string): Promise<void> {
    await this.#inFlight;
    await this.#drop(reason, undefined);
  }

  async #drop(reason: string, info: MemInfo | undefined): Promise<void> {
    const started = performance.now();
    this.#lastDropAt = started;
    await this.#opts.sync();
    try {
      await writeFile(this.#opts.dropCachesPath ?? "/proc/sys/vm/drop_caches", "1");
      this.drops++;
      this.#opts.log.info("page cache dropped", {
        reason,
        usedPct: info ? Math.round(usedPercent(info)) : undefined,
        reclaimableMiB: info ? Math.round(info.reclaimable / MIB) : undefined,
        ms: Math.round(performance.now() - started),
      });
    } catch (err) {
      this.#opts.log.warn("cannot drop the page cache", { reason, err: String(err) });
    }
  }
}
