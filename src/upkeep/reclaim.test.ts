import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { PageCacheReclaimer, parseMeminfo, shouldReclaim, usedPercent } from "./reclaim.ts";

const log = createLogger("error", () => {});
const GIB_KB = 1024 * 1024;
const meminfo = (totalKb: number, freeKb: number, cachedKb: number, shmemKb = 0) =>
  `MemTotal: ${totalKb} kB\nMemFree: ${freeKb} kB\nMemAvailable: ${freeKb + cachedKb} kB\nBuffers: 0 kB\nCached: ${cachedKb} kB\nShmem: ${shmemKb} kB\n`;

const dir = mkdtempSync(join(tmpdir(), "envd-reclaim-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("reclaim decision", () => {
  test("parseMeminfo: bytes; droppable cache excludes shmem", () => {
    const m = parseMeminfo(meminfo(8 * GIB_KB, GIB_KB, 4 * GIB_KB, GIB_KB));
    const GIB = 2 ** 30;
    assert.deepEqual(m, { total: 8 * GIB, free: GIB, available: 5 * GIB, reclaimable: 3 * GIB });
    assert.equal(parseMeminfo("MemFree: 1 kB"), undefined);
  });

  test("above 80 % counting the cache, with enough cache to drop", () => {
    const full = parseMeminfo(meminfo(8 * GIB_KB, 0.5 * GIB_KB, 4 * GIB_KB));
    assert.ok(full);
    assert.ok(usedPercent(full) > 90);
    assert.equal(shouldReclaim(full), true);
    // 80 % used exactly: not above the threshold
    assert.equal(shouldReclaim(parseMeminfo(meminfo(10 * GIB_KB, 2 * GIB_KB, 4 * GIB_KB)) as never), false);
    // the memory is anonymous (little cache): dropping would not help
    assert.equal(shouldReclaim(parseMeminfo(meminfo(8 * GIB_KB, 0.5 * GIB_KB, 16 * 1024)) as never), false);
    // shmem (tmpfs) cannot be dropped
    assert.equal(shouldReclaim(parseMeminfo(meminfo(8 * GIB_KB, 0.5 * GIB_KB, 4 * GIB_KB, 4 * GIB_KB)) as never), false);
    assert.equal(shouldReclaim(full, 95), false, "a higher threshold");
  });
});

describe("PageCacheReclaimer", () => {
  test("drops once above the threshold, then waits for the cooldown; sync comes first; stop waits for a run", async () => {
    const info = join(dir, "meminfo");
    const drop = join(dir, "drop_caches");
    writeFileSync(info, meminfo(8 * GIB_KB, 0.5 * GIB_KB, 4 * GIB_KB));
    writeFileSync(drop, "");
    const order: string[] = [];
    const r = new PageCacheReclaimer({
      log,
      meminfoPath: info,
      dropCachesPath: drop,
      cooldownMs: 60_000,
      sync: async () => {
        order.push(`sync(drop=${readFileSync(drop, "utf8")})`);
      },
    });
    assert.equal(await r.tick(), true);
    assert.equal(readFileSync(drop, "utf8"), "1");
    assert.deepEqual(order, ["sync(drop=)"]);
    assert.equal(await r.tick(), false, "cooldown");
    writeFileSync(drop, "");
    await r.dropNow("snapshot");
    assert.equal(readFileSync(drop, "utf8"), "1", "a requested drop ignores the cooldown");
    assert.equal(r.drops, 2);
    r.start();
    assert.equal(r.running, true);
    await r.stop();
    assert.equal(r.running, false);
  });

  test("threshold 0 disables the loop", () => {
    const r = new PageCacheReclaimer({ log, thresholdPct: 0, sync: async () => {} });
    r.start();
    assert.equal(r.running, false);
  });
});
