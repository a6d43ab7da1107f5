/**
 * Fan-out of one process's output to any number of subscribers, with replay and backpressure.
 *
 * - Every chunk goes into a bounded history (the most recent `historyBytes`), so a subscriber that
 *   attaches later (a reconnect) first receives what it missed, up to that bound.
 * - Each subscriber has its own queue. The source is paused only when *every* subscriber is above
 *   `highWaterBytes` (a slow reader slows the child, as in E2B envd); it resumes as soon as one of
 *   them drains below `lowWaterBytes`. Output is never dropped silently.
 * - A subscriber that falls `hardCapBytes` behind while others keep up, or that makes no progress
 *   for `stallMs` while it holds the source paused, is detached with an explicit error: it can
 *   never stall the child or the other subscribers.
 * - With no subscriber the source is never paused; output only feeds the history.
 */
import { Code, EnvdError } from "../errors.ts";

export type OutputStream = "stdout" | "stderr" | "pty";

export interface OutputChunk {
  stream: OutputStream;
  data: Buffer;
}

export type FanoutItem<E> = { kind: "data"; chunk: OutputChunk } | { kind: "end"; end: E };

export interface FanoutLimits {
  historyBytes: number;
  highWaterBytes: number;
  lowWaterBytes: number;
  hardCapBytes: number;
  stallMs: number;
}

export const DEFAULT_FANOUT_LIMITS: FanoutLimits = {
  historyBytes: 1 << 20,
  highWaterBytes: 2 << 20,
  lowWaterBytes: 512 << 10,
  hardCapBytes: 16 << 20,
  stallMs: 60_000,
};

export interface FlowControl {
  pause(): void;
  resume(): void;
}

export class OutputFanout<E> {
  readonly #limits: FanoutLimits;
  readonly #history: OutputChunk[] = [];
  #historyBytes = 0;
  readonly #subscribers = new Set<Subscription<E>>();
  #flow: FlowControl | undefined;
  #paused = false;
  #stallTimer: NodeJS.Timeout | undefined;
  #end: { value: E } | undefined;

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

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  /** Adds output. Chunks are shared between subscribers, never copied per subscriber. */
  push(stream: OutputStream, data: Buffer): void {
    if (this.#end || data.byteLength === 0) return;
    // A small read may be a view into a large pooled buffer: copy it so the history's byte bound
    // is the memory it really holds.
    // (allocUnsafeSlow: Buffer.from would copy into the shared pool slab, which has the same problem.)
    if (data.buffer.byteLength > 2 * data.byteLength) {
      const copy = Buffer.allocUnsafeSlow(data.byteLength);
      data.copy(copy);
      data = copy;
    }
    const chunk: OutputChunk = { stream, data };
    this.#history.push(chunk);
    this.#historyBytes += data.byteLength;
    while (this.#historyBytes > this.#limits.historyBytes && this.#history.length > 1) {
      this.#historyBytes -= (this.#history.shift() as OutputChunk).data.byteLength;
    }
    for (const sub of this.#subscribers) {
      sub._enqueue({ kind: "data", chunk });
      if (sub.queuedBytes > this.#limits.hardCapBytes) {
        this.#detach(sub, `output subscriber fell more than ${this.#limits.hardCapBytes} bytes behind and was detached`);
      }
    }
    this.#updateFlow();
  }

  /** Ends the output: every subscriber receives `end` after what it has queued. Idempotent. */
  end(value: E): void {
    if (this.#end) return;
    this.#end = { value };
    this.#clearStallTimer();
    for (const sub of this.#subscribers) sub._enqueue({ kind: "end", end: value });
    this.#setPaused(false);
  }

  get ended(): boolean {
    return this.#end !== undefined;
  }

  /**
   * Attaches a subscriber. With `replay`, its queue starts with the history (and the end, if the
   * output already ended). Dispose the subscription to detach.
   */
  subscribe(options: { replay: boolean }): Subscription<E> {
    const sub = new Subscription<E>(this);
    if (options.replay) for (const chunk of this.#history) sub._enqueue({ kind: "data", chunk });
    if (this.#end) sub._enqueue({ kind: "end", end: this.#end.value });
    else this.#subscribers.add(sub);
    this.#updateFlow();
    return sub;
  }

  /** Drops the history (when the process record is forgotten). */
  clearHistory(): void {
    this.#history.length = 0;
    this.#historyBytes = 0;
  }

  _unsubscribe(sub: Subscription<E>): void {
    if (this.#subscribers.delete(sub)) this.#updateFlow();
  }

  _drained(): void {
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
    this.#updateFlow();
    if (this.#paused) this.#armStallTimer();
  }
}

/**
 * One reader's view of the output. `take()` returns the next item synchronously (or undefined);
 * `ready()` resolves when an item, the end or a failure is available. Separating the two means a
 * caller can race `ready()` against timers and aborts without ever losing an item.
 */
export class Subscription<E> implements Disposable {
  readonly #fanout: OutputFanout<E>;
  readonly #queue: FanoutItem<E>[] = [];
  #head = 0;
  queuedBytes = 0;
  lastProgressAt = Date.now();
  #failure: EnvdError | undefined;
  #waiter: (() => void) | undefined;
  #disposed = false;

  constructor(fanout: OutputFanout<E>) {
    this.#fanout = fanout;
  }

  _enqueue(item: FanoutItem<E>): void {
    this.#queue.push(item);
    if (item.kind === "data") this.queuedBytes += item.chunk.data.byteLength;
    this.#wake();
  }

  _fail(err: EnvdError): void {
    this.#failure = err;
    this.#wake();
  }

  /** Next item, or undefined if none is queued. Throws the detach error once the queue is empty. */
  take(): FanoutItem<E> | undefined {
    if (this.#head < this.#queue.length) {
      const item = this.#queue[this.#head] as FanoutItem<E>;
      this.#queue[this.#head++] = undefined as unknown as FanoutItem<E>;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      if (item.kind === "data") {
        this.queuedBytes -= item.chunk.data.byteLength;
        this.lastProgressAt = Date.now();
        this.#fanout._drained();
      }
      return item;
    }
    if (this.#failure) throw this.#failure;
    return undefined;
  }

  /** Resolves when `take()` has something to return (an item or the failure). */
  ready(): Promise<void> {
    if (this.#head < this.#queue.length || this.#failure || this.#disposed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#queue.length = 0;
    this.#head = 0;
    this.queuedBytes = 0;
    this.#fanout._unsubscribe(this);
    this.#wake();
  }
}
