import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { httpStatusOf } from "../errors.ts";
import { openForDownload, probeUnsized, READ_CHUNK_BYTES, readChunks, writeRange } from "./download.ts";

const root = mkdtempSync(join(tmpdir(), "envd-download-"));
after(() => rmSync(root, { recursive: true, force: true }));

async function all(gen: AsyncGenerator<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of gen) parts.push(b);
  return Buffer.concat(parts);
}

test("openForDownload: size, mtime, ETag; 404 missing, 400 directory and FIFO", async () => {
  const f = join(root, "f");
  writeFileSync(f, "0123456789");
  await using file = await openForDownload(f);
  assert.equal(file.size, 10);
  assert.match(file.etag, /^"[0-9a-f]+-a-[0-9a-f]+"$/);
  await assert.rejects(openForDownload(join(root, "missing")), (err: unknown) => httpStatusOf(err) === 404);
  await assert.rejects(openForDownload(root), (err: unknown) => httpStatusOf(err) === 400);
  const fifo = join(root, "fifo");
  execFileSync("mkfifo", [fifo]);
  await assert.rejects(openForDownload(fifo), (err: unknown) => httpStatusOf(err) === 400);
});

test("readChunks: inclusive ranges, open end, chunk size bound, short files end early", async () => {
  const f = join(root, "big");
  const data = Buffer.alloc(READ_CHUNK_BYTES * 2 + 5);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  writeFileSync(f, data);
  await using file = await openForDownload(f);
  assert.deepEqual(await all(readChunks(file.handle, 0)), data);
  assert.deepEqual(await all(readChunks(file.handle, 3, 7)), data.subarray(3, 8));
  assert.deepEqual(await all(readChunks(file.handle, data.length - 2)), data.subarray(data.length - 2));
  assert.deepEqual(await all(readChunks(file.handle, 0, data.length + 100)), data);
  for await (const chunk of readChunks(file.handle, 0)) assert.ok(chunk.length <= READ_CHUNK_BYTES);
});

test("probeUnsized: undefined for an empty file, content for procfs", async () => {
  const empty = join(root, "empty");
  writeFileSync(empty, "");
  await using e = await openForDownload(empty);
  assert.equal(await probeUnsized(e.handle), undefined);
  await using p = await openForDownload("/proc/self/status");
  assert.equal(p.size, 0);
  assert.match((await probeUnsized(p.handle))?.toString() ?? "", /^Name:/);
});

/**
 * A sink that, like a slow socket, holds each written buffer and copies it out 2 ms later. With
 * a high-water mark above the chunk size its writes return true, so only the write callback says
 * when a buffer may be reused.
 */
function slowSink(highWaterMark = 64 << 10): { sink: Writable; received: Buffer[] } {
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, done) {
      setTimeout(() => {
        received.push(Buffer.from(chunk));
        done();
      }, 2);
    },
  });
  return { sink, received };
}

test("writeRange: the exact bytes of the range through a sink that holds its buffers, recycled only when written", async () => {
  const f = join(root, "ranged");
  const data = randomBytes(READ_CHUNK_BYTES * 5 + 123);
  writeFileSync(f, data);
  await using file = await openForDownload(f);
  for (const [start, end, highWaterMark] of [
    [0, data.length - 1, 64 << 10],
    [0, data.length - 1, 4 << 20],
    [READ_CHUNK_BYTES - 3, READ_CHUNK_BYTES * 3 + 9, 4 << 20],
    [5, 5, 64 << 10],
    [0, data.length + 999, 64 << 10],
  ] as const) {
    const { sink, received } = slowSink(highWaterMark);
    const n = await writeRange(file.handle, sink, start, end, new AbortController().signal);
    await new Promise<void>((resolve) => sink.end(resolve));
    const want = data.subarray(start, Math.min(end, data.length - 1) + 1);
    assert.equal(n, want.length);
    assert.ok(Buffer.concat(received).equals(want), `bytes ${start}-${end} differ`);
  }
});

test("writeRange: stops with the abort reason; rejects when the sink fails or closes before the end", { timeout: 30_000 }, async () => {
  const f = join(root, "aborted");
  writeFileSync(f, Buffer.alloc(READ_CHUNK_BYTES * 8, 1));
  await using file = await openForDownload(f);
  const controller = new AbortController();
  const { sink } = slowSink();
  const writing = writeRange(file.handle, sink, 0, READ_CHUNK_BYTES * 8 - 1, controller.signal);
  controller.abort(new Error("client left"));
  await assert.rejects(writing, /client left/);

  // A write that fails while writeRange is reading (its writes return true, so no drain is
  // awaited): the error comes back as the rejection, not as an unheard "error" event.
  const broken = new Writable({
    highWaterMark: 4 << 20,
    write(_chunk, _encoding, done) {
      setImmediate(() => done(new Error("disk on fire")));
    },
  });
  await assert.rejects(writeRange(file.handle, broken, 0, READ_CHUNK_BYTES * 8 - 1, new AbortController().signal), /disk on fire/);

  // Closed before the first write (already destroyed when a drain would be awaited) ...
  const gone = new Writable({ highWaterMark: 1, write() {} });
  const early = writeRange(file.handle, gone, 0, READ_CHUNK_BYTES * 8 - 1, new AbortController().signal);
  gone.destroy();
  await assert.rejects(early, /closed before the body was written/);
  // ... and while a drain is awaited: the first write never completes, the sink closes 5 ms later.
  let waiting = false;
  const stuck: Writable = new Writable({
    highWaterMark: 1,
    write() {
      waiting = true;
      setTimeout(() => stuck.destroy(), 5);
    },
  });
  const closing = writeRange(file.handle, stuck, 0, READ_CHUNK_BYTES * 8 - 1, new AbortController().signal);
  await assert.rejects(closing, /closed before the body was written/);
  assert.ok(waiting, "the sink was written to before it closed");
});
