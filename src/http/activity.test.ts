/**
 * GET /activity serves the sampler's numbers: /proc/net/dev and /proc/diskstats (fixture files
 * here) read by readIoCounters at each tick, turned into rates by the CpuSampler, and written by
 * the handler as `{cpu_count, cpu_used_pct, net_bps, disk_bps}`, with no reading per request.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { PhysicalDisks, readIoCounters } from "../upkeep/activity.ts";
import { CpuSampler } from "../upkeep/metrics.ts";
import { getActivity } from "./activity.ts";
import type { RouteContext } from "./router.ts";

const dir = mkdtempSync(join(tmpdir(), "envd-activity-route-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const netDev = (eth0Rx: number, eth0Tx: number, loBytes: number) => `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: ${loBytes} 1 0 0 0 0 0 0 ${loBytes} 1 0 0 0 0 0 0
  eth0: ${eth0Rx} 1 0 0 0 0 0 0 ${eth0Tx} 1 0 0 0 0 0 0
`;
const diskstats = (read: number, written: number) => ` 253 0 vda 1 0 ${read} 0 1 0 ${written} 0 0 0 0
 253 1 vda1 1 0 ${read} 0 1 0 ${written} 0 0 0 0
`;

async function get(handler: ReturnType<typeof getActivity>) {
  const headers = new Map<string, string | number>();
  let body = "";
  const res = {
    statusCode: 0,
    setHeader: (k: string, v: string | number) => headers.set(k.toLowerCase(), v),
    end: (b: string) => {
      body = b;
    },
  };
  await handler({ res } as unknown as RouteContext);
  return { status: res.statusCode, cacheControl: headers.get("cache-control"), body: JSON.parse(body) as Record<string, number> };
}

test("net_bps and disk_bps come from the sampler's io readings (no loopback, whole disks), read once per tick", async () => {
  const paths = { netDev: join(dir, "net-dev"), diskstats: join(dir, "diskstats") };
  mkdirSync(join(dir, "block", "vda"), { recursive: true });
  const disks = new PhysicalDisks(join(dir, "block"));
  let reads = 0;
  let now = 0;
  const sampler = new CpuSampler({
    read: () => ({ total: 0, idle: 0 }),
    readIo: () => {
      reads++;
      return readIoCounters(disks, paths);
    },
    now: () => now,
    intervalMs: 60_000,
  });
  const handler = getActivity(sampler);

  writeFileSync(paths.netDev, netDev(1_000, 500, 7_000_000));
  writeFileSync(paths.diskstats, diskstats(10, 20));
  sampler.start();
  // One second later: eth0 moved 3,000 B in and 1,000 B out (lo's 9 MB do not count); vda read 40
  // and wrote 60 more sectors (its partition vda1 is not counted again).
  writeFileSync(paths.netDev, netDev(4_000, 1_500, 16_000_000));
  writeFileSync(paths.diskstats, diskstats(50, 80));
  now = 1_000;
  sampler.tick();
  assert.equal(reads, 2);

  const first = await get(handler);
  assert.equal(first.status, 200);
  assert.equal(first.cacheControl, "no-store");
  assert.equal(first.body.net_bps, 4_000);
  assert.equal(first.body.disk_bps, (40 + 60) * 512);
  assert.deepEqual(Object.keys(first.body).sort(), ["cpu_count", "cpu_used_pct", "disk_bps", "net_bps"]);
  // Requests read the sampler's numbers, nothing else.
  await get(handler);
  assert.equal(reads, 2);
  sampler.stop();
});
