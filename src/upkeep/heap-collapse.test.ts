import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { anonHugePagesBytes, anonRwRegions, collapseSelf, HUGE_PAGE_BYTES, hugeWindows, splitSuccesses } from "./heap-collapse.ts";

const MAPS = `55d0c0a00000-55d0c0c00000 r--p 00000000 08:01 123 /usr/bin/node
55d0c0c00000-55d0c1000000 r-xp 00200000 08:01 123 /usr/bin/node
55d0c2000000-55d0c2400000 rw-p 00000000 00:00 0 [heap]
7f0000100000-7f0000700000 rw-p 00000000 00:00 0
7f0000700000-7f0000800000 ---p 00000000 00:00 0
7f0000800000-7f0000900000 rw-p 00000000 08:01 456 /lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`;

describe("heap collapse", () => {
  it("selects anonymous read-write mappings only (no file, no [heap]/[stack], no PROT_NONE)", () => {
    assert.deepEqual(anonRwRegions(MAPS), [{ start: 0x7f0000100000n, end: 0x7f0000700000n }]);
  });

  it("walks the 2 MiB windows wholly inside a region, aligned", () => {
    const windows = [...hugeWindows({ start: 0x7f0000100000n, end: 0x7f0000700000n })];
    assert.deepEqual(windows, [0x7f0000200000n, 0x7f0000400000n]);
    assert.deepEqual([...hugeWindows({ start: 0x200000n, end: 0x3fffffn })], []);
  });

  it("reads AnonHugePages in bytes", () => {
    assert.equal(anonHugePagesBytes("Rss: 100 kB\nAnonHugePages:      4096 kB\n"), 4096 * 1024);
    assert.equal(anonHugePagesBytes("Rss: 100 kB\n"), undefined);
  });

  it("splits successes by the hugepage delta, and never reports real work as a no-op", () => {
    assert.deepEqual(splitSuccesses(5, 0, 3 * HUGE_PAGE_BYTES), { collapsed: 3, alreadyHuge: 2 });
    assert.deepEqual(splitSuccesses(2, 0, 9 * HUGE_PAGE_BYTES), { collapsed: 2, alreadyHuge: 0 });
    assert.deepEqual(splitSuccesses(4, undefined, 0), { collapsed: 4, alreadyHuge: 0 });
    assert.deepEqual(splitSuccesses(4, 10 * HUGE_PAGE_BYTES, 0), { collapsed: 4, alreadyHuge: 0 });
  });

  it("collapses this process: every window attempted is counted once", async () => {
    const s = await collapseSelf();
    assert.ok(s.regions > 0);
    assert.equal(s.chunks, s.collapsed + s.alreadyHuge + s.skipped);
  });

  it("stops when the caller gives up", async () => {
    const s = await collapseSelf(AbortSignal.abort());
    assert.deepEqual(s, { regions: 0, chunks: 0, collapsed: 0, alreadyHuge: 0, skipped: 0 });
  });
});
