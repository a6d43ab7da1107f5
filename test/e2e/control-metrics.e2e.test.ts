import assert from "node:assert/strict";
import { readFileSync, statfsSync } from "node:fs";
import { cpus } from "node:os";
import { describe, test } from "node:test";
import { ENVD_VERSION } from "../../src/version.ts";
import type { Metrics } from "../../src/upkeep/metrics.ts";
import { postInit } from "./control-fakes.ts";
import { eventually, RUNTIMES, startDaemon } from "./harness.ts";

function meminfoBytes(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/meminfo", "utf8"));
  return Number(m?.[1]) * 1024;
}

for (const runtime of RUNTIMES) {
  describe(`/metrics, /envs, /health [${runtime}]`, () => {
    test("/metrics has every field of E2B envd, in its units", async () => {
      await using envd = await startDaemon({ runtime });
      const res = await envd.fetch("/metrics");
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.match(res.headers.get("content-type") ?? "", /application\/json/);
      const m = (await res.json()) as Metrics;
      assert.deepEqual(Object.keys(m).sort(), [
        "cpu_count",
        "cpu_used_pct",
        "disk_total",
        "disk_used",
        "mem_cache",
        "mem_total",
        "mem_total_mib",
        "mem_used",
        "mem_used_mib",
        "ts",
      ]);
      for (const [k, v] of Object.entries(m)) {
        assert.equal(typeof v, "number", k);
        if (k !== "cpu_used_pct") assert.ok(Number.isInteger(v) && v >= 0, `${k} = ${v}`);
      }
      assert.ok(Math.abs(m.ts - Date.now() / 1000) < 60, "ts is Unix seconds");
      assert.equal(m.cpu_count, cpus().length);
      assert.ok(m.cpu_used_pct >= 0 && m.cpu_used_pct <= 100);
      assert.equal(Math.round(m.cpu_used_pct * 100) / 100, m.cpu_used_pct, "two decimals at most");
      const total = meminfoBytes("MemTotal");
      assert.equal(m.mem_total, total);
      assert.equal(m.mem_total_mib, Math.floor(total / 1048576));
      assert.equal(m.mem_used_mib, Math.floor(m.mem_used / 1048576));
      // used = total − MemAvailable (read at nearly the same moment: allow what a busy box moves).
      const used = total - meminfoBytes("MemAvailable");
      assert.ok(Math.abs(m.mem_used - used) < total * 0.05, `mem_used ${m.mem_used} vs ${used}`);
      const cache = meminfoBytes("Cached") + meminfoBytes("SReclaimable");
      assert.ok(Math.abs(m.mem_cache - cache) < total * 0.05, `mem_cache ${m.mem_cache} vs ${cache}`);
      const fs = statfsSync("/");
      assert.equal(m.disk_total, fs.blocks * fs.bsize);
      assert.ok(Math.abs(m.disk_used - (fs.blocks - fs.bavail) * fs.bsize) < fs.blocks * fs.bsize * 0.01);
    });

    test("cpu_used_pct comes from a background sampler and follows load", async () => {
      await using envd = await startDaemon({ runtime });
      const spin = envd.process.start({ process: { cmd: "/bin/sh", args: ["-c", "while :; do :; done"] }, stdin: false });
      const it = spin[Symbol.asyncIterator]();
      const first = await it.next();
      const pid = first.value?.event?.event.case === "start" ? first.value.event.event.value.pid : 0;
      assert.ok(pid > 0);
      await eventually(async () => ((await (await envd.fetch("/metrics")).json()) as Metrics).cpu_used_pct > 10, "CPU use seen");
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: 9 });
      for (let r = await it.next(); !r.done; r = await it.next()) {
        // drain to the end event
      }
    });

    test("/envs is the default environment as JSON, and /health answers per flavor", async () => {
      {
        await using envd = await startDaemon({ runtime });
        assert.equal((await postInit(envd, { envVars: { ONE: "1", "WITH SPACE": "x y" } })).status, 204);
        const res = await envd.fetch("/envs");
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("cache-control"), "no-store");
        assert.deepEqual(await res.json(), { ONE: "1", "WITH SPACE": "x y", E2B_SANDBOX: "false" });
        const health = await envd.fetch("/health");
        assert.equal(health.status, 204);
        assert.equal(health.headers.get("cache-control"), "no-store");
      }
      {
        await using envd = await startDaemon({ runtime, args: ["--flavor", "wrenn"] });
        const health = await envd.fetch("/health");
        assert.equal(health.status, 200);
        assert.deepEqual(await health.json(), { version: ENVD_VERSION });
        assert.deepEqual(await (await envd.fetch("/envs")).json(), { WRENN_SANDBOX: "false" });
      }
    });
  });
}
