/**
 * Fan-out of one process's output to any number of subscribers: one shared log, a cursor per
 * subscriber, exact byte positions per stream, replay from a position, coalescing and backpressure.
 *
 * - Every read of the child's output is appended to one log. Each stream (stdout, stderr, pty) has
 *   its own byte position counted from the process start; a log entry knows the position of its
 *   first byte, so every data item a subscriber takes carries its exact `offset`.
 * - A subscriber is a cursor into the log, not a queue of copies: N subscribers cost N cursors.
 *   `take()` returns everything contiguous of one stream from the cursor, up to `maxEventBytes`:
 *   a reader that keeps up gets each read as it comes (no added latency), a reader that is behind
 *   gets the backlog in large items (one data event instead of one per pipe read).
 * - The log keeps the most recent `historyBytes` for replay (a later Connect, or a resume from a
 *   position), plus whatever a live subscriber has not read yet. The bound is counted in memory:
 *   each entry costs its buffer's capacity plus ENTRY_OVERHEAD_BYTES, and small reads of the same
 *   stream are merged into one growing entry, so a byte-at-a-time writer costs about one byte per
 *   byte of history, not one object per byte.
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

export type OutputStream = "stdout" | "stderr" | "pty";
export const OUTPUT_STREAMS: readonly OutputStream[] = ["stdout", "stderr", "pty"];

/** A byte position in each stream, counted from the process start. */
export type OutputOffsets = Record<OutputStream, number>;

export interface OutputChunk {
  stream: OutputStream;
  /** Position of `data[0]` in its stream. */
  offset: number;
  data: Buffer;
}

export type FanoutItem<E> = { kind: "data"; chunk: OutputChunk } | { kind: "end"; end: E };

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

/**
 * Estimated memory of one log entry besides its bytes: the entry object (~64 B), a Buffer view
 * (~96 B) and an ArrayBuffer backing store header (~96 B). Counted in every bound of this module.
 */
export const ENTRY_OVERHEAD_BYTES = 256;
/** Reads smaller than this are copied into (and merged with) a growing entry of their stream. */
const MERGE_BELOW_BYTES = 16 << 10;
/** A merged entry grows (doubling) up to this capacity, then a new one starts. */
const MERGED_ENTRY_MAX_BYTES = 64 << 10;
/**
 * What a reader took in its last this-many bytes stays retained while it is connected (and after it
 * leaves, for the resume grace): it may still be in socket buffers when the connection drops, and
 * the client resumes from what it actually received.
 */
const IN_FLIGHT_BYTES = 4 << 20;

export const DEFAULT_FANOUT_LIMITS: FanoutLimits = {
  historyBytes: 1 << 20,
  highWaterBytes: 2 << 20,
  lowWaterBytes: 512 << 10,
  hardCapBytes: 16 << 20,
  stallMs: 60_000,
  maxEventBytes: 1 << 20,
  entryOverheadBytes: ENTRY_OVERHEAD_BYTES,
  resumeGraceMs: 30_000,
};

export interface FlowControl {
  pause(): void;
  resume(): void;
}

interface Entry {
  readonly stream: OutputStream;
  /** Position of buf[0] in its stream. */
  readonly offset: number;
  /** Position of buf[0] among all bytes pushed (every stream). */
  readonly start: number;
  buf: Buffer;
  len: number;
  /** A buffer we own with room to grow: later small reads of the same stream are appended. */
  mergeable: boolean;
}

export class OutputFanout<E> {
  readonly #limits: FanoutLimits;
  readonly #log: Entry[] = [];
  /** Index into #log of the oldest retained entry (entries before it are evicted). */
  #head = 0;
  /** Sequence number of #log[#head]. */
  #base = 0;
  #retainedCost = 0;
  /** Bytes pushed so far, all streams. */
  #total = 0;
  readonly #produced: OutputOffsets = { stdout: 0, stderr: 0, pty: 0 };
  /** Per stream, the position before which every byte has been evicted. */
  readonly #dropped: OutputOffsets = { stdout: 0, stderr: 0, pty: 0 };
  readonly #subscribers = new Set<Subscription<E>>();
  /** Cursors of subscribers that left (before or after the end): their unread output waits for a resume. */
  #departed: { seq: number; until: number }[] = [];
  #flow: FlowControl | undefined;
  #paused = false;
  #stallTimer: NodeJS.Timeout | undefined;
  #end: { value: E } | undefined;
  #historyCleared = false;

  constructor(limits: Partial<FanoutLimits> = {}) {
    this.#limits = { ...DEFAULT_FANOUT_LIMITS, ...limits };
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
    return this.#produced;
  }

  /** Memory the log holds now (entries' capacity plus their overhead). */
  get retainedBytes(): number {
    return this.#retainedCost;
  }

  get limits(): Readonly<FanoutLimits> {
    return this.#limits;
  }

  /** Adds output. The bytes are kept once, whatever the number of subscribers. */
  push(stream: OutputStream, data: Buffer): void {
    if (this.#end || data.byteLength === 0) return;
    const n = data.byteLength;
    const tail = this.#log.length > this.#head ? this.#log[this.#log.length - 1] : undefined;
    if (tail?.mergeable && tail.stream === stream && n < MERGE_BELOW_BYTES && tail.len + n <= MERGED_ENTRY_MAX_BYTES) {
      if (tail.len + n > tail.buf.byteLength) {
        // Grow by doubling (readers already handed a view keep the old buffer; its bytes never change).
        const grown = Buffer.allocUnsafeSlow(Math.min(MERGED_ENTRY_MAX_BYTES, Math.max(256, 2 * (tail.len + n))));
        tail.buf.copy(grown, 0, 0, tail.len);
        this.#retainedCost += grown.byteLength - tail.buf.byteLength;
        tail.buf = grown;
      }
      data.copy(tail.buf, tail.len);
      tail.len += n;
    } else {
      let buf = data;
      let mergeable = false;
      // Small reads, and views into a larger pooled buffer, are copied into a buffer of their own
      // so that what the log counts is the memory it really holds. (allocUnsafeSlow: Buffer.from
      // would copy into the shared pool slab, which has the same problem.)
      if (n < MERGE_BELOW_BYTES || data.buffer.byteLength > 2 * n) {
        buf = Buffer.allocUnsafeSlow(n);
        data.copy(buf);
        mergeable = n < MERGE_BELOW_BYTES;
      }
      const entry: Entry = { stream, offset: this.#produced[stream], start: this.#total, buf, len: n, mergeable };
      this.#log.push(entry);
      this.#retainedCost += this.#costOf(entry);
    }
    this.#produced[stream] += n;
    this.#total += n;
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
    let from: OutputOffsets;
    if (options.from) {
      for (const s of OUTPUT_STREAMS) {
        const at = options.from[s];
        if (!Number.isSafeInteger(at) || at < 0 || at > this.#produced[s]) {
          throw new EnvdError(Code.OutOfRange, `cannot resume ${s} at byte ${at}: the process has produced ${this.#produced[s]} bytes of ${s}`);
        }
        if (at < this.#dropped[s]) {
          throw new EnvdError(
            Code.OutOfRange,
            `cannot resume ${s} at byte ${at}: output before byte ${this.#dropped[s]} of ${s} is no longer retained`,
          );
        }
      }
      from = { ...options.from };
    } else if (options.replay) {
      from = { ...this.#dropped };
    } else {
      from = { ...this.#produced };
    }
    // The cursor starts at the oldest entry when replaying (bytes below `from` are skipped as it
    // goes), else on the last entry's end (which may still grow by merging).
    const last = this.#log.length - 1;
    const sub =
      options.replay || options.from
        ? new Subscription<E>(this, this.#base, 0, this.#total - this.#bytesFrom(this.#head), from)
        : last >= this.#head
          ? new Subscription<E>(this, this.#base + (last - this.#head), (this.#log[last] as Entry).len, this.#total, from)
          : new Subscription<E>(this, this.#base, 0, this.#total, from);
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

  /** Bytes (all streams) held in the log from index `i` on. */
  #bytesFrom(i: number): number {
    const e = this.#log[i];
    return e ? this.#total - e.start : 0;
  }

  #costOf(e: Entry): number {
    return e.buf.byteLength + this.#limits.entryOverheadBytes;
  }

  /** Drops the oldest entries beyond the history bound that no live subscriber still needs. */
  #evict(): void {
    const limit = this.#historyCleared ? 0 : this.#limits.historyBytes;
    if (this.#retainedCost <= limit) return;
    let pinned = Number.POSITIVE_INFINITY;
    for (const sub of this.#subscribers) pinned = Math.min(pinned, sub._pinSeq);
    if (this.#departed.length > 0) {
      // Departed readers' backlogs are kept while they are young and the log is under the hard cap.
      const now = Date.now();
      if (this.#retainedCost > this.#limits.hardCapBytes) this.#departed = [];
      else this.#departed = this.#departed.filter((d) => d.until > now);
      for (const d of this.#departed) pinned = Math.min(pinned, d.seq);
    }
    const keepLast = this.#historyCleared ? 0 : 1;
    while (this.#retainedCost > limit && this.#log.length - this.#head > keepLast && this.#base < pinned) {
      const e = this.#log[this.#head] as Entry;
      this.#log[this.#head++] = undefined as unknown as Entry;
      this.#base++;
      this.#retainedCost -= this.#costOf(e);
      this.#dropped[e.stream] = e.offset + e.len;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#log.length) {
      this.#log.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** The entry with sequence number `seq`, if retained. */
  _entry(seq: number): Entry | undefined {
    return seq >= this.#base ? this.#log[this.#head + (seq - this.#base)] : undefined;
  }

  _isLast(seq: number): boolean {
    return seq === this._lastSeq;
  }

  /** Sequence number of the newest entry (#base - 1 when the log is empty). */
  get _lastSeq(): number {
    return this.#base + (this.#log.length - this.#head) - 1;
  }

  get _total(): number {
    return this.#total;
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

/**
 * One reader's cursor into the output. `take()` returns the next item synchronously (or
 * undefined); `ready()` resolves when an item, the end or a failure is available. Separating the
 * two means a caller can race `ready()` against timers and aborts without ever losing an item.
 */
export class Subscription<E> implements Disposable {
  readonly #fanout: OutputFanout<E>;
  /** Where this subscriber starts in each stream (what a start event announces). */
  readonly offsets: Readonly<OutputOffsets>;
  /** Per stream, bytes below this position are skipped (a resume inside an entry). */
  readonly #from: OutputOffsets;
  /** Cursor: entry sequence number and byte position inside it. */
  _seq: number;
  /** Entries taken recently: what was sent may still be in flight when the connection drops. */
  readonly #taken: { seq: number; end: number }[] = [];
  #pos: number;
  /** Bytes (all streams) pushed before the cursor. */
  #consumed: number;
  lastProgressAt = Date.now();
  #failure: EnvdError | undefined;
  #waiter: (() => void) | undefined;
  #disposed = false;
  #endTaken = false;

  constructor(fanout: OutputFanout<E>, seq: number, pos: number, consumed: number, from: OutputOffsets) {
    this.#fanout = fanout;
    this._seq = seq;
    this.#pos = pos;
    this.#consumed = consumed;
    this.#from = from;
    this.offsets = { ...from };
  }

  /** The oldest entry this reader still needs retained: its cursor, or what it sent recently. */
  get _pinSeq(): number {
    const t = this.#taken[0];
    return t ? Math.min(t.seq, this._seq) : this._seq;
  }

  /** How far behind the end of the output this reader is: bytes plus a per-entry overhead. */
  get queuedBytes(): number {
    if (this.#failure || this.#disposed) return 0;
    const entriesBehind = Math.max(0, this.#fanout._lastSeq - this._seq);
    return this.#fanout._total - this.#consumed + entriesBehind * this.#fanout.limits.entryOverheadBytes;
  }

  _wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  _fail(err: EnvdError): void {
    this.#failure = err;
    this._wake();
  }

  /**
   * Next item, or undefined if nothing is available yet. A data item holds every contiguous byte
   * of one stream from the cursor, up to the fanout's maxEventBytes. Throws the detach error.
   */
  take(): FanoutItem<E> | undefined {
    if (this.#disposed) return undefined;
    if (this.#failure) throw this.#failure;
    const f = this.#fanout;
    const max = f.limits.maxEventBytes;
    let first: OutputChunk | undefined;
    let parts: Buffer[] | undefined;
    let firstSeq = this._seq;
    let size = 0;
    for (;;) {
      const e = f._entry(this._seq);
      if (!e) break;
      if (this.#pos >= e.len) {
        if (f._isLast(this._seq)) break; // the tail may still grow
        this._seq++;
        this.#pos = 0;
        continue;
      }
      const skipTo = this.#from[e.stream] - e.offset;
      if (this.#pos < skipTo) {
        const to = Math.min(skipTo, e.len);
        this.#consumed += to - this.#pos;
        this.#pos = to;
        continue;
      }
      if (first && (e.stream !== first.stream || size >= max)) break;
      const n = Math.min(e.len - this.#pos, max - size);
      const view = e.buf.subarray(this.#pos, this.#pos + n);
      if (!first) {
        first = { stream: e.stream, offset: e.offset + this.#pos, data: view };
        firstSeq = this._seq;
      }
      else {
        parts ??= [first.data];
        parts.push(view);
      }
      size += n;
      this.#pos += n;
      this.#consumed += n;
    }
    if (first) {
      if (parts) first.data = Buffer.concat(parts, size);
      this.#taken.push({ seq: firstSeq, end: this.#consumed });
      while (this.#taken.length > 1 && (this.#taken[1] as { end: number }).end < this.#consumed - IN_FLIGHT_BYTES) this.#taken.shift();
      this.lastProgressAt = Date.now();
      f._drained();
      return { kind: "data", chunk: first };
    }
    const end = f._end;
    if (end && !this.#endTaken) {
      this.#endTaken = true;
      return { kind: "end", end: end.value };
    }
    return undefined;
  }

  /** Resolves when `take()` may have something to return (an item, the end or the failure). */
  ready(): Promise<void> {
    if (this.#failure || this.#disposed || this.#hasItem()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  #hasItem(): boolean {
    const f = this.#fanout;
    this.#skip();
    if (f._total > this.#consumed) return true;
    return f._end !== undefined && !this.#endTaken;
  }

  /** Moves the cursor past read entries and past bytes below the resume positions. */
  #skip(): void {
    const f = this.#fanout;
    for (;;) {
      const e = f._entry(this._seq);
      if (!e) return;
      if (this.#pos >= e.len) {
        if (f._isLast(this._seq)) return;
        this._seq++;
        this.#pos = 0;
        continue;
      }
      const skipTo = this.#from[e.stream] - e.offset;
      if (this.#pos >= skipTo) return;
      const to = Math.min(skipTo, e.len);
      this.#consumed += to - this.#pos;
      this.#pos = to;
    }
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#fanout._unsubscribe(this);
    this._wake();
  }
}
