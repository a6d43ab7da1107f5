/**
 * The polling watchers of CreateWatcher / GetWatcherEvents / RemoveWatcher: kept by id
 * (`w` + 20 random [a-z0-9], as E2B envd makes them), at most MAX_WATCHERS at once, and removed
 * when the client removes them, when they sit unpolled for IDLE_TTL_MS, or at shutdown.
 */
import { randomInt } from "node:crypto";
import { Code, EnvdError } from "../errors.ts";
import type { FsEvent, Watcher } from "./watcher.ts";

export const MAX_WATCHERS = 128;
/** A watcher nobody polled for this long is presumed abandoned. */
export const IDLE_TTL_MS = 60 * 60_000;
const SWEEP_INTERVAL_MS = 60_000;

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export function newWatcherId(): string {
  let id = "w";
  for (let i = 0; i < 20; i++) id += ID_ALPHABET[randomInt(ID_ALPHABET.length)];
  return id;
}

interface Slot {
  watcher: Watcher;
  lastPolledMs: number;
}

export class WatcherRegistry implements Disposable {
  readonly #slots = new Map<string, Slot>();
  readonly #maxWatchers: number;
  readonly #idleTtlMs: number;
  readonly #now: () => number;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(opts: { maxWatchers?: number; idleTtlMs?: number; now?: () => number } = {}) {
    this.#maxWatchers = opts.maxWatchers ?? MAX_WATCHERS;
    this.#idleTtlMs = opts.idleTtlMs ?? IDLE_TTL_MS;
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#slots.size;
  }

  /** Refuses a new watcher when the registry is full (ResourceExhausted), before any work is done. */
  checkCapacity(): void {
    this.sweep();
    if (this.#slots.size >= this.#maxWatchers) {
      throw new EnvdError(
        Code.ResourceExhausted,
        `too many watchers: ${this.#maxWatchers} are open; remove unused ones with RemoveWatcher`,
      );
    }
  }

  /** Registers a started watcher and returns its id. */
  add(watcher: Watcher): string {
    try {
      this.checkCapacity();
    } catch (err) {
      watcher.close();
      throw err;
    }
    let id = newWatcherId();
    while (this.#slots.has(id)) id = newWatcherId();
    this.#slots.set(id, { watcher, lastPolledMs: this.#now() });
    this.#sweeper ??= setInterval(() => this.sweep(), SWEEP_INTERVAL_MS).unref();
    return id;
  }

  /**
   * Returns and clears the watcher's buffered events. A failed watcher returns its error once its
   * events are taken, and on every later call. Unknown id → NotFound.
   */
  poll(id: string): FsEvent[] {
    const slot = this.#get(id);
    slot.lastPolledMs = this.#now();
    const events = slot.watcher.take();
    if (events.length > 0) return events;
    const err = slot.watcher.error;
    if (err) throw err;
    return [];
  }

  /** Stops and forgets the watcher. Unknown id → NotFound. */
  remove(id: string): void {
    const slot = this.#get(id);
    this.#slots.delete(id);
    slot.watcher.close();
  }

  /** Removes watchers idle for longer than the TTL. */
  sweep(): void {
    const cutoff = this.#now() - this.#idleTtlMs;
    for (const [id, slot] of this.#slots) {
      if (slot.lastPolledMs >= cutoff) continue;
      this.#slots.delete(id);
      slot.watcher.close();
    }
  }

  #get(id: string): Slot {
    const slot = this.#slots.get(id);
    if (!slot) throw new EnvdError(Code.NotFound, `watcher with id ${id} not found`);
    return slot;
  }

  [Symbol.dispose](): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    for (const slot of this.#slots.values()) slot.watcher.close();
    this.#slots.clear();
  }
}
