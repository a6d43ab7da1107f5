/**
 * One reader of a process's output: a cursor into the shared log (output-history.ts), not a queue
 * of copies, so N readers cost N cursors.
 *
 * - `take()` returns everything contiguous of one stream from the cursor, up to `maxEventBytes`:
 *   a reader that keeps up gets each read as it comes (no added latency), a reader that is behind
 *   gets the backlog in large items (one data event instead of one per pipe read).
 * - A resume inside an entry skips the bytes below its positions (`from`).
 * - The reader pins what it took in its last IN_FLIGHT_BYTES (it may still be in socket buffers
 *   when the connection drops), and reports how far behind it is (`queuedBytes`) for the fanout's
 *   flow control. Disposing it tells the fanout it left.
 */
import type { EnvdError } from "../errors.ts";
import type { OutputChunk, OutputEntry, OutputOffsets, OutputStream } from "./output-history.ts";

export type FanoutItem<E> = { kind: "data"; chunk: OutputChunk } | { kind: "end"; end: E };

/** A data item as views into the log, not yet joined: an encoder can copy them once, into its message. */
export interface OutputParts {
  stream: OutputStream;
  /** Position of the first byte of `parts[0]` in its stream. */
  offset: number;
  /** Contiguous bytes of `stream`, in order (views into the log; never modified afterwards). */
  parts: Buffer[];
  /** Bytes in `parts`, all together. */
  size: number;
}

export type FanoutPartsItem<E> = { kind: "data"; chunk: OutputParts } | { kind: "end"; end: E };

/**
 * What a reader took in its last this-many bytes stays retained while it is connected (and after it
 * leaves, for the resume grace): it may still be in socket buffers when the connection drops, and
 * the client resumes from what it actually received.
 */
const IN_FLIGHT_BYTES = 4 << 20;

/** What a Subscription needs of its fanout (OutputFanout implements it). */
export interface SubscriptionSource<E> {
  readonly limits: Readonly<{ maxEventBytes: number; entryOverheadBytes: number }>;
  /** The entry with sequence number `seq`, if retained. */
  _entry(seq: number): OutputEntry | undefined;
  _isLast(seq: number): boolean;
  /** Sequence number of the newest entry. */
  readonly _lastSeq: number;
  /** Bytes pushed so far, all streams. */
  readonly _total: number;
  readonly _end: { value: E } | undefined;
  _unsubscribe(sub: Subscription<E>): void;
  /** The reader moved: eviction and flow control may change. */
  _drained(): void;
}

/**
 * One reader's cursor into the output. `take()` returns the next item synchronously (or
 * undefined); `ready()` resolves when an item, the end or a failure is available. Separating the
 * two means a caller can race `ready()` against timers and aborts without ever losing an item.
 */
export class Subscription<E> implements Disposable {
  readonly #fanout: SubscriptionSource<E>;
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

  constructor(fanout: SubscriptionSource<E>, seq: number, pos: number, consumed: number, from: OutputOffsets) {
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
    // Bytes below a resume position are not a backlog: move past them first (a resumed reader
    // counted as far behind paused the source, then had nothing to take, and nothing lifted it).
    this.#skip();
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
    const item = this.takeParts();
    if (item?.kind !== "data") return item;
    const { stream, offset, parts, size } = item.chunk;
    return { kind: "data", chunk: { stream, offset, data: parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size) } };
  }

  /**
   * As `take()`, with the data left as views into the log (no copy), and at most `maxBytes`
   * (default: the fanout's maxEventBytes) in one item.
   */
  takeParts(maxBytes?: number): FanoutPartsItem<E> | undefined {
    if (this.#disposed) return undefined;
    if (this.#failure) throw this.#failure;
    const f = this.#fanout;
    const max = Math.max(1, Math.min(maxBytes ?? f.limits.maxEventBytes, f.limits.maxEventBytes));
    let first: OutputParts | undefined;
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
        first = { stream: e.stream, offset: e.offset + this.#pos, parts: [view], size: 0 };
        firstSeq = this._seq;
      } else {
        first.parts.push(view);
      }
      size += n;
      this.#pos += n;
      this.#consumed += n;
    }
    if (first) {
      first.size = size;
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
