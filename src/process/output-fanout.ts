/**
 * Fan-out of one process's output to any number of subscribers, and its flow control: one shared
 * log (output-history.ts), a cursor per subscriber (output-subscription.ts), exact byte positions
 * per stream, replay from a position, coalescing and backpressure.
 *
 * - The log keeps the most recent `historyBytes` for replay (a later Connect, or a resume from a
 *   position), plus whatever a live subscriber has not read yet. The bound is counted in memory
 *   (each entry's capacity plus `entryOverheadBytes`).
 * - The source is paused only when *every* subscriber is more than `highWaterBytes` behind (a slow
 *   reader slows the child, as in E2B envd); it resumes as soon as one of them is back under
 *   `lowWaterBytes`. Output is never dropped silently.
 * - A subscriber that falls `hardCapBytes` behind while others keep up, or that makes no progress
 *   for `stallMs` while it holds the source paused, is detached with an explicit error: it can
 *   never stall the child or the other subscribers, and it stops pinning the log.
 * - With no subscriber the source is never paused; output only feeds the history. A subscriber
 *   that leaves (a dropped connection, also after the end) keeps its position retained for
 *   `resumeGraceMs`, as long as the log stays under `hardCapBytes`, so the client can resume.
 */
import { Code, EnvdError } from "../errors.ts";
import {
  ENTRY_OVERHEAD_BYTES,
  OUTPUT_STREAMS,
  type OutputEntry,
  OutputHistory,
  type OutputOffsets,
  type OutputStream,
  type PackedHistory,
} from "./output-history.ts";
import { Subscription, type SubscriptionSource } from "./output-subscription.ts";

export { ENTRY_OVERHEAD_BYTES };

export interface FanoutLimits {
  /** Memory (capacity + per-entry overhead) of the history kept for replay. */
  historyBytes: number;
  highWaterBytes: number;
  lowWaterBytes: number;
  hardCapBytes: number;
  stallMs: number;
  /** Largest data item `take()` returns; a backlog is coalesced up to this size. */
  maxEventBytes: number;
  /** What one log entry costs besides its buffer (the entry object, the Buffer and its backing store). */
  entryOverheadBytes: number;
  /**
   * How long what a departed subscriber had not read yet stays retained for its resume (bounded
   * by hardCapBytes of memory in all).
   */
  resumeGraceMs: number;
}

export const DEFAULT_FANOUT_LIMITS: Readonly<FanoutLimits> = Object.freeze({
  historyBytes: 1 << 20,
  highWaterBytes: 2 << 20,
  lowWaterBytes: 512 << 10,
  hardCapBytes: 16 << 20,
  stallMs: 60_000,
  maxEventBytes: 1 << 20,
  entryOverheadBytes: ENTRY_OVERHEAD_BYTES,
  resumeGraceMs: 30_000,
});

export interface FlowControl {
  pause(): void;
  resume(): void;
}

export class OutputFanout<E> implements SubscriptionSource<E> {
  readonly #limits: Readonly<FanoutLimits>;
  readonly #history: OutputHistory;
  readonly #subscribers = new Set<Subscription<E>>();
  /** Cursors of subscribers that left (before or after the end): their unread output waits for a resume. */
  #departed: { seq: number; until: number }[] = [];
  #flow: FlowControl | undefined;
  #paused = false;
  #stallTimer: NodeJS.Timeout | undefined;
  #end: { value: E } | undefined;
  #historyCleared = false;

  constructor(limits?: Partial<FanoutLimits>, history?: OutputHistory) {
    // Without overrides (every process outside the tests) the shared defaults: one object fewer per process.
    this.#limits = limits ? { ...DEFAULT_FANOUT_LIMITS, ...limits } : DEFAULT_FANOUT_LIMITS;
    this.#history = history ?? new OutputHistory(this.#limits.entryOverheadBytes);
  }

  /**
   * The retained output of an ended fanout that nobody reads any more, packed into two objects
   * (OutputHistory.pack), for the ended process's compact record; undefined while it runs or is
   * read, or whose retained output still costs more than `maxBytes` once what departed readers no
   * longer need is let go.
   */
  pack(maxBytes = Number.POSITIVE_INFINITY): PackedHistory | undefined {
    if (!this.#end || this.#subscribers.size > 0) return undefined;
    this.#evict();
    return this.#history.retainedBytes <= maxBytes ? this.#history.pack() : undefined;
  }

  /** An ended fanout over a packed history, for one late reader of an ended process's record. */
  static unpack<E>(packed: PackedHistory, end: E, limits: Readonly<FanoutLimits> = DEFAULT_FANOUT_LIMITS): OutputFanout<E> {
    const fanout = new OutputFanout<E>(limits, OutputHistory.unpack(packed, limits.entryOverheadBytes));
    fanout.#end = { value: end };
    return fanout;
  }

  /** The source's pause/resume, attached once the source exists. */
  setFlowControl(flow: FlowControl): void {
    this.#flow = flow;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Live subscribers (detached and disposed ones excluded). */
  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  /** Bytes produced so far in each stream. */
  get produced(): Readonly<OutputOffsets> {
    return this.#history.produced;
  }

  /** Memory the log holds now (entries' capacity plus their overhead). */
  get retainedBytes(): number {
    return this.#history.retainedBytes;
  }

  get limits(): Readonly<FanoutLimits> {
    return this.#limits;
  }

  /** Adds output. The bytes are kept once, whatever the number of subscribers. */
  push(stream: OutputStream, data: Buffer): void {
    if (this.#end || data.byteLength === 0) return;
    this.#history.append(stream, data);
    for (const sub of this.#subscribers) {
      sub._wake();
      if (sub.queuedBytes > this.#limits.hardCapBytes) {
        this.#detach(sub, `output subscriber fell more than ${this.#limits.hardCapBytes} bytes behind and was detached`);
      }
    }
    this.#evict();
    this.#updateFlow();
  }

  /** Ends the output: every subscriber receives `end` after what it has not read yet. Idempotent. */
  end(value: E): void {
    if (this.#end) return;
    this.#end = { value };
    this.#clearStallTimer();
    for (const sub of this.#subscribers) sub._wake();
    this.#setPaused(false);
  }

  get ended(): boolean {
    return this.#end !== undefined;
  }

  /**
   * Attaches a subscriber and says where it starts (`subscription.offsets`):
   * - `from`: exactly at these positions (a resume). Throws OutOfRange when a position is no longer
   *   retained or lies beyond what was produced.
   * - `replay` without `from`: at the oldest retained byte of each stream.
   * - neither: at the current end (only what comes next).
   * Dispose the subscription to detach.
   */
  subscribe(options: { replay: boolean; from?: OutputOffsets }): Subscription<E> {
    const h = this.#history;
    let from: OutputOffsets;
    if (options.from) {
      for (const s of OUTPUT_STREAMS) {
        const at = options.from[s];
        if (!Number.isSafeInteger(at) || at < 0 || at > h.produced[s]) {
          throw new EnvdError(Code.OutOfRange, `cannot resume ${s} at byte ${at}: the process has produced ${h.produced[s]} bytes of ${s}`);
        }
        if (at < h.dropped[s]) {
          throw new EnvdError(
            Code.OutOfRange,
            `cannot resume ${s} at byte ${at}: output before byte ${h.dropped[s]} of ${s} is no longer retained`,
          );
        }
      }
      from = { ...options.from };
    } else if (options.replay) {
      from = { ...h.dropped };
    } else {
      from = { ...h.produced };
    }
    // The cursor starts at the oldest entry when replaying (bytes below `from` are skipped as it
    // goes), else on the last entry's end (which may still grow by merging).
    const last = h.entry(h.lastSeq);
    const sub =
      options.replay || options.from
        ? new Subscription<E>(this, h.firstSeq, 0, h.firstStart, from)
        : last
          ? new Subscription<E>(this, h.lastSeq, last.len, h.total, from)
          : new Subscription<E>(this, h.firstSeq, 0, h.total, from);
    this.#subscribers.add(sub);
    this.#updateFlow();
    return sub;
  }

  /** Drops the history (when the process record is forgotten); live readers keep what they still need. */
  clearHistory(): void {
    this.#historyCleared = true;
    this.#departed = [];
    this.#evict();
  }

  /** Drops the oldest entries beyond the history bound that no live subscriber still needs. */
  #evict(): void {
    const limit = this.#historyCleared ? 0 : this.#limits.historyBytes;
    if (this.#history.retainedBytes <= limit) return;
    let pinned = Number.POSITIVE_INFINITY;
    for (const sub of this.#subscribers) pinned = Math.min(pinned, sub._pinSeq);
    if (this.#departed.length > 0) {
      // Departed readers' backlogs are kept while they are young and the log is under the hard cap.
      const now = Date.now();
      if (this.#history.retainedBytes > this.#limits.hardCapBytes) this.#departed = [];
      else this.#departed = this.#departed.filter((d) => d.until > now);
      for (const d of this.#departed) pinned = Math.min(pinned, d.seq);
    }
    this.#history.evict(limit, pinned, this.#historyCleared ? 0 : 1);
  }

  /** The entry with sequence number `seq`, if retained. */
  _entry(seq: number): OutputEntry | undefined {
    return this.#history.entry(seq);
  }

  _isLast(seq: number): boolean {
    return seq === this.#history.lastSeq;
  }

  /** Sequence number of the newest entry (one before the oldest's when the log is empty). */
  get _lastSeq(): number {
    return this.#history.lastSeq;
  }

  get _total(): number {
    return this.#history.total;
  }

  get _end(): { value: E } | undefined {
    return this.#end;
  }

  _unsubscribe(sub: Subscription<E>): void {
    if (this.#subscribers.delete(sub)) {
      // Also after the end: a fast command often ends before its reader's connection drops, and
      // the client resumes from what it received (the record, and so the log, goes 30 s after the end).
      if (this.#limits.resumeGraceMs > 0) {
        this.#departed.push({ seq: sub._pinSeq, until: Date.now() + this.#limits.resumeGraceMs });
      }
      this.#evict();
      this.#updateFlow();
    }
  }

  _drained(): void {
    this.#evict();
    if (this.#paused) this.#updateFlow();
  }

  #detach(sub: Subscription<E>, message: string): void {
    this.#subscribers.delete(sub);
    sub._fail(new EnvdError(Code.ResourceExhausted, message));
  }

  #updateFlow(): void {
    if (this.#end) return;
    let allFull = this.#subscribers.size > 0;
    let anyLow = false;
    for (const sub of this.#subscribers) {
      if (sub.queuedBytes <= this.#limits.highWaterBytes) allFull = false;
      if (sub.queuedBytes <= this.#limits.lowWaterBytes) anyLow = true;
    }
    if (allFull) this.#setPaused(true);
    else if (!this.#paused || anyLow || this.#subscribers.size === 0) this.#setPaused(false);
  }

  #setPaused(paused: boolean): void {
    if (paused === this.#paused) return;
    this.#paused = paused;
    if (paused) {
      this.#flow?.pause();
      this.#armStallTimer();
    } else {
      this.#clearStallTimer();
      this.#flow?.resume();
    }
  }

  #armStallTimer(): void {
    this.#clearStallTimer();
    this.#stallTimer = setTimeout(() => this.#onStall(), this.#limits.stallMs);
    this.#stallTimer.unref();
  }

  #clearStallTimer(): void {
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
  }

  #onStall(): void {
    this.#stallTimer = undefined;
    if (!this.#paused) return;
    const cutoff = Date.now() - this.#limits.stallMs;
    for (const sub of this.#subscribers) {
      if (sub.lastProgressAt <= cutoff) {
        this.#detach(sub, `output subscriber made no progress for ${this.#limits.stallMs} ms and was detached`);
      }
    }
    this.#evict();
    this.#updateFlow();
    if (this.#paused) this.#armStallTimer();
  }
}
