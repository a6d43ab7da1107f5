import assert from "node:assert/strict";
import { test } from "node:test";
import { collectMetrics, CpuSampler, cpuPercent, memoryFrom, parseMeminfo, parseProcStat } from "./metrics.ts";

test("parseProcStat sums the first eight fields and counts iowait as idle", () => {
  const t = parseProcStat("cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 1 1 1 1 1 1 1 1\n");
  assert.deepEqual(t, { total: 980, idle: 820 });
  assert.throws(() => parseProcStat("intr 1 2 3\n"), /no cpu line/);
});

test("cpuPercent is the busy share of the interval with two decimals", () => {
  assert.equal(cpuPercent({ total: 0, idle: 0 }, { total: 300, idle: 200 }), 33.33);
  assert.equal(cpuPercent({ total: 100, idle: 50 }, { total: 100, idle: 50 }), 0);
  assert.equal(cpuPercent({ total: 0, idle: 0 }, { total: 100, idle: 0 }), 100);
});

test("memory: used = MemTotal − MemAvailable, cache = Cached + SReclaimable, in bytes", () => {
  const info = parseMeminfo(
    "MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     600 kB\nBuffers:           10 kB\nCached:           300 kB\nSReclaimable:      20 kB\nHugePages_Total:       0\n",
  );
  assert.equal(info.get("HugePages_Total"), 0);
  assert.deepEqual(memoryFrom(info), { total: 1000 * 1024, used: 400 * 1024, cache: 320 * 1024 });
  // No MemAvailable (old kernels): free + buffers + cached.
  const old = parseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 300 kB\n");
  assert.equal(memoryFrom(old).used, 590 * 1024);
});

test("the sampler reports the last interval and keeps its value after stop", () => {
  const samples = [
    { total: 0, idle: 0 },
    { total: 100, idle: 75 },
    { total: 200, idle: 125 },
  ];
  let i = 0;
  const sampler = new CpuSampler({ read: () => samples[i++] as { total: number; idle: number }, intervalMs: 60_000 });
  assert.equal(sampler.percent, 0);
  sampler.start();
  sampler.tick();
  assert.equal(sampler.percent, 25);
  sampler.tick();
  assert.equal(sampler.percent, 50);
  sampler.stop();
  assert.equal(sampler.percent, 50);
});

test("collectMetrics reads this machine with E2B's field names and units", () => {
  const sampler = new CpuSampler();
  const m = collectMetrics(sampler);
  assert.deepEqual(Object.keys(m), [
    "ts",
    "cpu_count",
    "cpu_used_pct",
    "mem_total_mib",
    "mem_used_mib",
    "mem_total",
    "mem_used",
    "mem_cache",
    "disk_used",
    "disk_total",
  ]);
  assert.ok(Math.abs(m.ts - Date.now() / 1000) < 5);
  assert.ok(m.cpu_count >= 1);
  assert.equal(m.mem_total_mib, Math.floor(m.mem_total / 1048576));
  assert.ok(m.mem_used > 0 && m.mem_used < m.mem_total);
  assert.ok(m.disk_used > 0 && m.disk_used <= m.disk_total);
});

test("the sampler turns two io readings into net_bps and disk_bps over the interval between them", () => {
  const readings = [
    { netBytes: 1_000, diskBytes: 4_096 }, // start(): the baseline
    { netBytes: 3_000, diskBytes: 4_096 + 512 * 100 }, // +2,000 B, +51,200 B over 1 s
    { netBytes: 3_500, diskBytes: 4_096 + 512 * 100 }, // +500 B, no disk I/O over 0.5 s
    { netBytes: 100, diskBytes: 0 }, // counters went back (device set changed): 0, not negative
  ];
  const times = [10_000, 11_000, 11_500, 12_500];
  let io = 0;
  let t = 0;
  const sampler = new CpuSampler({
    read: () => ({ total: 0, idle: 0 }),
    readIo: () => readings[io++] as { netBytes: number; diskBytes: number },
    now: () => times[t++] as number,
    intervalMs: 60_000,
  });
  assert.deepEqual([sampler.netBps, sampler.diskBps], [0, 0]);
  sampler.start();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [0, 0], "one reading is no rate yet");
  sampler.tick();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [2_000, 51_200]);
  sampler.tick();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [1_000, 0]);
  sampler.tick();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [0, 0]);
  sampler.stop();
});

test("the sampler keeps its io rates through a failed reading and restarts its baseline after stop", () => {
  const readings: ({ netBytes: number; diskBytes: number } | Error)[] = [
    { netBytes: 0, diskBytes: 0 },
    { netBytes: 1_000, diskBytes: 2_000 },
    new Error("EIO"),
    // After stop() and start() (a snapshot pause): a new baseline, so the pause is not one long
    // quiet interval; the rates of before are kept until the next tick.
    { netBytes: 50_000, diskBytes: 50_000 },
    { netBytes: 50_300, diskBytes: 50_600 },
  ];
  const times = [0, 1_000, 900_000, 901_000]; // a failed reading takes no time stamp
  let io = 0;
  let t = 0;
  const sampler = new CpuSampler({
    read: () => ({ total: 0, idle: 0 }),
    readIo: () => {
      const r = readings[io++];
      if (r instanceof Error) throw r;
      return r as { netBytes: number; diskBytes: number };
    },
    now: () => times[t++] as number,
    intervalMs: 60_000,
  });
  sampler.start();
  sampler.tick();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [1_000, 2_000]);
  sampler.tick(); // the reading fails: the last rates stay
  assert.deepEqual([sampler.netBps, sampler.diskBps], [1_000, 2_000]);
  sampler.stop();
  sampler.start();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [1_000, 2_000]);
  sampler.tick();
  assert.deepEqual([sampler.netBps, sampler.diskBps], [300, 600]);
  sampler.stop();
});
