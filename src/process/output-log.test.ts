import assert from "node:assert/strict";
import { test } from "node:test";
import { OUTPUT_LOG_LINE_MAX_BYTES, OUTPUT_LOG_MAX_RECORDS, OUTPUT_LOG_TRUNCATED, OutputLogRecorder } from "./output-log.ts";

function sink(enabled = true) {
  const lines: Record<string, unknown>[] = [];
  return { lines, sink: { enabled, write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) } };
}

test("one record per line and stream, split across reads, the last partial line at the end", () => {
  const { lines, sink: s } = sink();
  const r = new OutputLogRecorder(s, 42);
  r.feed("stdout", Buffer.from("hel"));
  r.feed("stderr", Buffer.from("oops\n"));
  r.feed("stdout", Buffer.from("lo\nworld\n\npart"));
  r.feed("pty", Buffer.from("prompt\r\n"));
  r.end();
  assert.deepEqual(
    lines.map((l) => [l.event_type, l.stream, l.pid, l.message]),
    [
      ["process_output", "stderr", 42, "oops"],
      ["process_output", "stdout", 42, "hello"],
      ["process_output", "stdout", 42, "world"],
      ["process_output", "stdout", 42, ""],
      ["process_output", "pty", 42, "prompt"],
      ["process_output", "stdout", 42, "part"],
    ],
  );
});

test("a line is cut at 64 KiB; 10,000 records end with one truncation marker", () => {
  const { lines, sink: s } = sink();
  const r = new OutputLogRecorder(s, 1);
  r.feed("stdout", Buffer.alloc(OUTPUT_LOG_LINE_MAX_BYTES + 500, 0x61));
  r.feed("stdout", Buffer.from("bbb\nnext\n"));
  assert.equal(String(lines[0]?.message).length, OUTPUT_LOG_LINE_MAX_BYTES);
  assert.equal(lines[1]?.message, "next");
  for (let i = 0; i < OUTPUT_LOG_MAX_RECORDS + 50; i++) r.feed("stderr", Buffer.from(`${i}\n`));
  r.end();
  assert.equal(lines.length, OUTPUT_LOG_MAX_RECORDS + 1);
  assert.equal(lines.at(-1)?.message, OUTPUT_LOG_TRUNCATED);
  assert.equal(lines.filter((l) => l.message === OUTPUT_LOG_TRUNCATED).length, 1);
});

test("2 MiB of messages per command, then the marker; nothing while no collector is configured", () => {
  const { lines, sink: s } = sink();
  const r = new OutputLogRecorder(s, 1);
  const line = Buffer.from(`${"x".repeat(60_000)}\n`);
  for (let i = 0; i < 50; i++) r.feed("stdout", line);
  const bytes = lines.filter((l) => l.message !== OUTPUT_LOG_TRUNCATED).reduce((n, l) => n + (l.message as string).length, 0);
  assert.ok(bytes <= 2 << 20 && bytes > (2 << 20) - 60_000, `${bytes}`);
  assert.equal(lines.at(-1)?.message, OUTPUT_LOG_TRUNCATED);
  const off = sink(false);
  const q = new OutputLogRecorder(off.sink, 2);
  q.feed("stdout", Buffer.from("a\nb\n"));
  q.end();
  assert.equal(off.lines.length, 0);
});
