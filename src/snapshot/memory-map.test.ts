import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { kcoreHeaderBytes, matchRamSegments, pagesIn, parseIomemSystemRam, parseKcoreLoadSegments } from "./memory-map.ts";

const fixture = (name: string) => new URL(`../../test/fixtures/memory/${name}`, import.meta.url);
const iomem = readFileSync(fixture("iomem-qemu-5g.txt"), "utf8");
const kcore = new Uint8Array(readFileSync(fixture("kcore-head-qemu-5g.bin")));

describe("/proc/iomem", () => {
  test("the top-level System RAM ranges, end exclusive, nested lines skipped", () => {
    assert.deepEqual(parseIomemSystemRam(iomem), [
      { start: 0x1000, end: 0xa0000 - 0x400 },
      { start: 0x100000, end: 0xbffe0000 },
      { start: 0x100000000, end: 0x140000000 },
    ]);
  });

  test("addresses hidden from an unprivileged reader give no ranges", () => {
    assert.deepEqual(parseIomemSystemRam(readFileSync(fixture("iomem-unprivileged.txt"), "utf8")), []);
  });

  test("garbage lines are skipped", () => {
    assert.deepEqual(parseIomemSystemRam("zz-yy : System RAM\n00001000-00000fff : System RAM\n\n00002000-00002fff : System RAM\n"), [
      { start: 0x2000, end: 0x3000 },
    ]);
  });
});

describe("/proc/kcore", () => {
  test("the PT_LOAD program headers (the PT_NOTE is not one)", () => {
    assert.equal(kcoreHeaderBytes(kcore.subarray(0, 64)), kcore.length);
    const segs = parseKcoreLoadSegments(kcore);
    assert.equal(segs.length, 9);
    assert.deepEqual(segs[3], { offset: Number(0xffff9a4c00001000n - 0xffff880000000000n + 0x2000n), vaddr: 0xffff9a4c00001000n, fileSize: 0x9e000 });
  });

  test("not ELF, 32-bit, or a table cut short: an error", () => {
    assert.throws(() => parseKcoreLoadSegments(new Uint8Array(64)), /not an ELF file/);
    const b32 = kcore.slice();
    b32[4] = 1;
    assert.throws(() => parseKcoreLoadSegments(b32), /64-bit little-endian/);
    assert.throws(() => parseKcoreLoadSegments(kcore.subarray(0, 200)), /cut short/);
  });

  test("every RAM range is matched to its own segment under one direct-map base, not the decoy", () => {
    const windows = matchRamSegments(parseIomemSystemRam(iomem), parseKcoreLoadSegments(kcore));
    const off = (v: bigint) => Number(v - 0xffff880000000000n + 0x2000n);
    // The first range (0x1000-0x9fbff) counts in whole pages, as the kernel builds its segment.
    assert.deepEqual(windows, [
      { offset: off(0xffff9a4c00001000n), bytes: 0x9e000 },
      { offset: off(0xffff9a4c00100000n), bytes: 0xbfee0000 },
      { offset: off(0xffff9a4d00000000n), bytes: 0x40000000 },
    ]);
    assert.equal(pagesIn(windows), 0x9e + 0xbfee0 + 0x40000);
  });

  test("a segment missing for one range, or of another size: an error, never a partial walk", () => {
    const ranges = parseIomemSystemRam(iomem);
    const segs = parseKcoreLoadSegments(kcore);
    const withoutLast = segs.filter((s) => s.vaddr !== 0xffff9a4d00000000n);
    assert.throws(() => matchRamSegments(ranges, withoutLast), /no direct-map base maps all 3 System RAM ranges/);
    const resized = segs.map((s) => (s.vaddr === 0xffff9a4c00100000n ? { ...s, fileSize: s.fileSize - 4096 } : s));
    assert.throws(() => matchRamSegments(ranges, resized), /no direct-map base/);
    assert.throws(() => matchRamSegments([], segs), /no System RAM ranges/);
  });

  test("user-space segments never give a base", () => {
    const ranges = [{ start: 0x100000, end: 0x200000 }];
    assert.throws(() => matchRamSegments(ranges, [{ offset: 0, vaddr: 0x7f0000100000n, fileSize: 0x100000 }]), /no direct-map base/);
  });
});
