/**
 * Command output as log records, when a log collector is configured (as E2B envd's
 * `handler/output_log.go`): one record per line of stdout, stderr or pty,
 * `{event_type:"process_output", stream, pid, message}`, so sandbox logs can be searched by pid.
 *
 * Per command at most OUTPUT_LOG_MAX_BYTES of messages and OUTPUT_LOG_MAX_RECORDS records; a line is
 * cut at OUTPUT_LOG_LINE_MAX_BYTES (the rest of it is skipped). The first time a cap is hit, one
 * marker record says so and nothing more is recorded for that command. The sink must not block:
 * the log shipper queues (bounded) and posts in the background, so a slow or absent collector
 * never slows the command or its streams.
 */
import type { OutputStream } from "./output-history.ts";

export const OUTPUT_LOG_MAX_BYTES = 2 << 20;
export const OUTPUT_LOG_MAX_RECORDS = 10_000;
export const OUTPUT_LOG_LINE_MAX_BYTES = 64 << 10;
export const OUTPUT_LOG_TRUNCATED = "[output truncated: command exceeded log capture limit]";

/** Where records go: the log shipper. `enabled` is false while no collector is configured. */
export interface OutputLogSink {
  readonly enabled: boolean;
  /** One JSON line; must return at once. */
  write(line: string): void;
}

interface PendingLine {
  parts: Buffer[];
  bytes: number;
  /** The line passed the per-line cap: skip to its end. */
  cut: boolean;
}

export class OutputLogRecorder {
  readonly #sink: OutputLogSink;
  readonly #pid: number;
  readonly #partial = new Map<OutputStream, PendingLine>();
  #bytes = 0;
  #records = 0;
  #done = false;

  constructor(sink: OutputLogSink, pid: number) {
    this.#sink = sink;
    this.#pid = pid;
  }

  /** A read of the command's output. */
  feed(stream: OutputStream, data: Buffer): void {
    if (this.#done || !this.#sink.enabled) return;
    let p = this.#partial.get(stream);
    let from = 0;
    while (from < data.length && !this.#done) {
      const nl = data.indexOf(0x0a, from);
      const end = nl === -1 ? data.length : nl;
      p ??= { parts: [], bytes: 0, cut: false };
      if (!p.cut) {
        const room = OUTPUT_LOG_LINE_MAX_BYTES - p.bytes;
        const take = Math.min(room, end - from);
        if (take > 0) {
          p.parts.push(Buffer.from(data.subarray(from, from + take)));
          p.bytes += take;
        }
        if (end - from > take) p.cut = true;
      }
      if (nl === -1) break;
      this.#emit(stream, p);
      p = undefined;
      from = nl + 1;
    }
    if (p) this.#partial.set(stream, p);
    else this.#partial.delete(stream);
  }

  /** The command ended: what is left of each stream's last line is one record more. */
  end(): void {
    for (const [stream, p] of this.#partial) if (!this.#done && this.#sink.enabled) this.#emit(stream, p);
    this.#partial.clear();
    this.#done = true;
  }

  #emit(stream: OutputStream, p: PendingLine): void {
    let line = Buffer.concat(p.parts, p.bytes);
    if (stream === "pty" && line.at(-1) === 0x0d) line = line.subarray(0, -1);
    if (this.#records + 1 > OUTPUT_LOG_MAX_RECORDS || this.#bytes + line.length > OUTPUT_LOG_MAX_BYTES) {
      this.#done = true;
      this.#write(stream, OUTPUT_LOG_TRUNCATED);
      return;
    }
    this.#records++;
    this.#bytes += line.length;
    this.#write(stream, line.toString("utf8"));
  }

  #write(stream: OutputStream, message: string): void {
    this.#sink.write(
      JSON.stringify({ ts: new Date().toISOString(), level: "info", event_type: "process_output", stream, pid: this.#pid, message }),
    );
  }
}
