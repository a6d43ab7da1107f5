/**
 * Ships the daemon's own log lines to the log collector named by the metadata's `address`
 * (docs/protocol.md §7.1), as E2B envd does in Firecracker: each JSON line is POSTed on its own with
 * `instanceID` and `envID` added, `Content-Type: application/json`.
 *
 * Lines written before the metadata arrives wait in a queue bounded to LOG_QUEUE_MAX_BYTES (the
 * oldest are dropped first); a line over LOG_LINE_MAX_BYTES is dropped. A failed POST drops its
 * line (the line was printed to stdout already). Never logs through the logger (that would loop).
 */
import type { MmdsData } from "../control/mmds.ts";

export const LOG_QUEUE_MAX_BYTES = 8 << 20;
export const LOG_LINE_MAX_BYTES = 192 << 10;
const POST_TIMEOUT_MS = 10_000;

export type LogPoster = (url: string, body: string, signal: AbortSignal) => Promise<void>;

export class LogShipper {
  readonly #post: LogPoster;
  readonly #queue: string[] = [];
  #bytes = 0;
  #target: { url: string; instanceID: string; envID: string } | undefined;
  #pumping: Promise<void> | undefined;
  #stopped = new AbortController();
  /** Lines lost to the bounds or to failed POSTs. */
  dropped = 0;

  constructor(post: LogPoster = postJson) {
    this.#post = post;
  }

  /** A collector is known (the metadata named one): command output is worth recording. */
  get enabled(): boolean {
    return this.#target !== undefined && !this.#stopped.signal.aborted;
  }

  /** Queues one log line (a JSON object, with or without its newline). */
  write(line: string): void {
    if (this.#stopped.signal.aborted) return;
    const text = line.replace(/\n+$/, "");
    if (text === "") return;
    if (text.length > LOG_LINE_MAX_BYTES) {
      this.dropped++;
      return;
    }
    this.#queue.push(text);
    this.#bytes += text.length;
    while (this.#bytes > LOG_QUEUE_MAX_BYTES && this.#queue.length > 0) {
      this.#bytes -= (this.#queue.shift() as string).length;
      this.dropped++;
    }
    this.#pump();
  }

  /** Where to ship, from the metadata. An empty address keeps lines queued (E2B: shipping stays off). */
  setTarget(data: MmdsData): void {
    if (!data.address) return;
    this.#target = { url: data.address, instanceID: data.instanceID ?? "", envID: data.envID ?? "" };
    this.#pump();
  }

  /** Waits until the queue is empty or `timeoutMs` passed, then stops shipping. */
  async close(timeoutMs: number): Promise<void> {
    let expired = false;
    let timer: NodeJS.Timeout | undefined;
    // A ref'd timer on purpose: it keeps the event loop alive while the last lines go out (Bun
    // exits on an otherwise empty loop even with a fetch in flight).
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        expired = true;
        resolve();
      }, timeoutMs);
    });
    while (this.#pumping && !expired) await Promise.race([this.#pumping, deadline]);
    clearTimeout(timer);
    this.#stopped.abort();
  }

  #pump(): void {
    if (this.#pumping || !this.#target || this.#queue.length === 0) return;
    this.#pumping = (async () => {
      while (this.#target && this.#queue.length > 0 && !this.#stopped.signal.aborted) {
        const line = this.#queue.shift() as string;
        this.#bytes -= line.length;
        const body = withIds(line, this.#target.instanceID, this.#target.envID);
        if (body === undefined) {
          this.dropped++;
          continue;
        }
        try {
          await this.#post(this.#target.url, body, AbortSignal.any([this.#stopped.signal, AbortSignal.timeout(POST_TIMEOUT_MS)]));
        } catch {
          this.dropped++;
        }
      }
    })().finally(() => {
      this.#pumping = undefined;
      if (!this.#stopped.signal.aborted) this.#pump();
    });
  }
}

/** The line with instanceID and envID set, or undefined when it is not a JSON object. */
export function withIds(line: string, instanceID: string, envID: string): string | undefined {
  try {
    const o: unknown = JSON.parse(line);
    if (typeof o !== "object" || o === null || Array.isArray(o)) return undefined;
    return JSON.stringify({ ...o, instanceID, envID });
  } catch {
    return undefined;
  }
}

async function postJson(url: string, body: string, signal: AbortSignal): Promise<void> {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body, signal });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
}
