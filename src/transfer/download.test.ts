import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { httpStatusOf } from "../errors.ts";
import { openForDownload, probeUnsized, READ_CHUNK_BYTES, readChunks } from "./download.ts";

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
