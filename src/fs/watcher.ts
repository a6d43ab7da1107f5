/**
 * One client's watch: the events of a WatchEngine watch, turned into named, typed events (with
 * EntryInfo when asked), queued for the client with a bound. The queue is the only place events
 * wait, so a slow client costs its own memory up to the bound and then gets an explicit
 * ResourceExhausted error, never a silent gap; other watchers are unaffected.
 *
 * Used by streaming WatchDir (take/ready until the client leaves) and by the polling watchers of
 * the registry (drain on GetWatcherEvents).
 */
import { join } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import { type Entry, entryInfoIfExists, type OwnerNames } from "./entry-info.ts";
import { OP_CHMOD, OP_CREATE, OP_REMOVE, OP_RENAME, OP_WRITE, OPS_IN_ORDER } from "./inotify.ts";
import type { WatchEnd, WatchEngine, WatchHandle, WatchSink } from "./watch-engine.ts";

export type FsEventType = "create" | "write" | "remove" | "rename" | "chmod";

export interface FsEvent {
  /** Relative to the watched directory (`f.txt`, `sub/f.txt`; `.` for the directory itself). */
  name: string;
  type: FsEventType;
  /** With includeEntry, on create, write and chmod while the path still exists. */
  entry?: Entry;
}

export interface WatchOptions {
  root: string;
  recursive: boolean;
  includeEntry: boolean;
  names: OwnerNames;
  /** Globs left out with everything beneath them (exclude-globs.ts, validated by the caller). */
  exclude?: readonly string[];
  /** Most events kept for a client that does not read them; beyond it the watch fails. */
  maxQueued?: number;
}

/** Enough for a burst of 10,000 new files with their writes and chmods, several times over. */
export const DEFAULT_MAX_QUEUED_EVENTS = 131_072;

const TYPE_OF_OP: Record<number, FsEventType> = {
  [OP_CREATE]: "create",
  [OP_RENAME]: "rename",
  [OP_CHMOD]: "chmod",
  [OP_WRITE]: "write",
  [OP_REMOVE]: "remove",
};

export class Watcher implements WatchSink, Disposable {
  readonly root: string;
  readonly #includeEntry: boolean;
  readonly #names: OwnerNames;
  readonly #maxQueued: number;
  #handle: WatchHandle | undefined;
  #queue: FsEvent[] = [];
  /** Raw batches are turned into events one after another (entry lookups are async). */
  #chain: Promise<void> = Promise.resolve();
  #error: EnvdError | undefined;
  #ended = false;
  #closed = false;
  #wake: (() => void) | undefined;

  private constructor(opts: WatchOptions) {
    this.root = opts.root;
    this.#includeEntry = opts.includeEntry;
    this.#names = opts.names;
    this.#maxQueued = opts.maxQueued ?? DEFAULT_MAX_QUEUED_EVENTS;
  }

  /** Starts watching; resolves once every change from now on will be reported. */
  static async start(engine: WatchEngine, opts: WatchOptions): Promise<Watcher> {
    const w = new Watcher(opts);
    w.#handle = await engine.watch(opts.root, opts.recursive, w, opts.exclude ?? []);
    if (w.#closed) w.#handle.close();
    return w;
  }

  /** The error that stopped the watch, reported after the events before it were taken. */
  get error(): EnvdError | undefined {
    return this.#queue.length === 0 ? this.#error : undefined;
  }

  /** The watched directory went away and every event before that was taken. */
  get ended(): boolean {
    return this.#ended && this.#queue.length === 0 && this.#error === undefined;
  }

  /** Takes every queued event. */
  take(): FsEvent[] {
    const out = this.#queue;
    this.#queue = [];
    return out;
  }

  /** Resolves when there is something new to take (events, an error or the end). */
  ready(): Promise<void> {
    if (this.#queue.length > 0 || this.#error || this.#ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  onEvents(events: [string, number][]): void {
    this.#chain = this.#chain.then(() => this.#ingest(events));
  }

  onEnd(end: WatchEnd): void {
    this.#chain = this.#chain.then(() => {
      if (end.kind === "gone") this.#ended = true;
      else this.#error ??= end.error;
      this.#handle = undefined;
      this.#notify();
    });
  }

  async #ingest(events: [string, number][]): Promise<void> {
    if (this.#closed || this.#error) return;
    for (const [name, ops] of events) {
      for (const op of OPS_IN_ORDER) {
        if (!(ops & op)) continue;
        if (this.#queue.length >= this.#maxQueued) {
          this.#fail(
            new EnvdError(
              Code.ResourceExhausted,
              `the watcher fell behind: ${this.#maxQueued} events were waiting to be read, so it was stopped and later events were not kept; watch again to continue`,
            ),
          );
          return;
        }
        const ev: FsEvent = { name, type: TYPE_OF_OP[op] as FsEventType };
        if (this.#includeEntry && (op === OP_CREATE || op === OP_WRITE || op === OP_CHMOD)) {
          const entry = await entryInfoIfExists(name === "." ? this.root : join(this.root, name), this.#names).catch(
            () => undefined,
          );
          if (entry) ev.entry = entry;
        }
        this.#queue.push(ev);
      }
    }
    this.#notify();
  }

  #fail(error: EnvdError): void {
    this.#error ??= error;
    this.#handle?.close();
    this.#handle = undefined;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Stops the watch and drops what is queued. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#handle?.close();
    this.#handle = undefined;
    this.#queue = [];
    this.#notify();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
