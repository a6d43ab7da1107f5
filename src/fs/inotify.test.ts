import assert from "node:assert/strict";
import { test } from "node:test";
import { IN_CREATE, IN_ISDIR, IN_MODIFY, IN_MOVED_TO, OP_CREATE, OP_WRITE, opsOfMask, parseEvents } from "./inotify.ts";

function record(wd: number, mask: number, name: string, pad = 16): Buffer {
  const nameBytes = name ? Buffer.alloc(Math.ceil((Buffer.byteLength(name) + 1) / pad) * pad) : Buffer.alloc(0);
  nameBytes.write(name);
  const head = Buffer.alloc(16);
  head.writeInt32LE(wd, 0);
  head.writeUInt32LE(mask, 4);
  head.writeUInt32LE(7, 8);
  head.writeUInt32LE(nameBytes.length, 12);
  return Buffer.concat([head, nameBytes]);
}

test("parseEvents decodes packed inotify_event records, NUL padding and UTF-8 names", () => {
  const buf = Buffer.concat([record(1, IN_CREATE, "a.txt"), record(2, IN_MODIFY | IN_ISDIR, "ünïcödé-name-longer-than-16"), record(3, 0x4000, "")]);
  assert.deepEqual(parseEvents(buf, buf.length), [
    { wd: 1, mask: IN_CREATE, cookie: 7, name: "a.txt" },
    { wd: 2, mask: IN_MODIFY | IN_ISDIR, cookie: 7, name: "ünïcödé-name-longer-than-16" },
    { wd: 3, mask: 0x4000, cookie: 7, name: "" },
  ]);
  // a truncated trailing record is not decoded
  assert.equal(parseEvents(buf, buf.length - 1).length, 2);
});

test("opsOfMask maps inotify bits as fsnotify does", () => {
  assert.equal(opsOfMask(IN_CREATE), OP_CREATE);
  assert.equal(opsOfMask(IN_MOVED_TO), OP_CREATE);
  assert.equal(opsOfMask(IN_CREATE | IN_MODIFY), OP_CREATE | OP_WRITE);
  assert.equal(opsOfMask(0x8000), 0);
});
