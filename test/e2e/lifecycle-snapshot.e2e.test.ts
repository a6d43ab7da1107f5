/**
 * Snapshot and restore, simulated: /snapshot/prepare (Wrenn) or /freeze (E2B), then the restore
 * signal (/health or /init), watched from the outside through raw connections and the daemon's logs.
 */
import assert from "node:assert/strict";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { postInit, recorder, tempDir } from "./control-fakes.ts";
import { eventually, identity, isRoot, RUNTIMES, runToEnd, startDaemon } from "./harness.ts";
import { rawConnect, rawHealth, rawStartStream } from "./lifecycle-fixtures.ts";

const logsWith = (logs: Record<string, unknown>[], msg: string) => logs.filter((l) => l.msg === msg);

for (const runtime of RUNTIMES) {
  describe(`snapshot prepare and restore [${runtime}]`, () => {
    test("prepare closes idle keep-alives and stops the loops; the first /health restores once: stale connections dropped, processes and output kept", async () => {
      await using envd = await startDaemon({ runtime });
      // An idle keep-alive connection and a live output stream, both opened before the snapshot.
      const idle = await rawConnect(envd.port);
      const first = await rawHealth(idle);
      assert.match(first, /^HTTP\/1\.1 204/);
      assert.doesNotMatch(first, /connection: close/i);
      const stream = await rawConnect(envd.port);
      rawStartStream(stream, "/bin/sh", ["-c", "i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.1; done"]);
      await eventually(() => stream.received().includes("dGljaz"), "the stream's first output"); // base64 of "tick"
      const [proc] = await eventually(async () => (await envd.process.list({})).processes, "the ticking process");
      const pid = proc?.pid as number;

      const prep = await envd.fetch("/snapshot/prepare", { method: "POST" });
      assert.equal(prep.status, 204);
      assert.equal(prep.headers.get("cache-control"), "no-store");
      assert.equal(prep.headers.get("connection"), "close", "keep-alive is off once prepared");
      await eventually(() => idle.isClosed(), "the idle keep-alive connection to be closed at prepare");
      assert.equal(stream.isClosed(), false, "a busy stream stays open until the restore");
      const prepared = await eventually(() => logsWith(envd.logs, "prepared for snapshot")[0], "the prepare log");
      assert.deepEqual(
        [...(prepared.loopsStopped as string[])].sort(),
        ["cpu-sampler", "heap-trimmer", "metadata-poller", "page-cache-reclaimer", "port-forwarder", "port-scanner"],
      );
      assert.equal(prepared.synced, true);
      const startsBefore = logsWith(envd.logs, "port forwarding started").length;

      // Restore signal: the first /health after prepare.
      const health = await envd.fetch("/health");
      assert.equal(health.status, 204);
      const restored = await eventually(() => logsWith(envd.logs, "restored after snapshot")[0], "the restore log");
      assert.equal(restored.trigger, "health");
      assert.ok((restored.closedConnections as number) >= 1, `closed ${restored.closedConnections}`);
      assert.ok((restored.loopsStarted as string[]).includes("port-forwarder"));
      const reseed = restored.reseed as { mixed: boolean; crngReseeded: boolean };
      assert.equal(reseed.mixed, true);
      if (isRoot) assert.equal(reseed.crngReseeded, true, "RNDRESEEDCRNG as root");
      assert.equal(logsWith(envd.logs, "port forwarding started").length, startsBefore + 1, "the scanner was restarted");
      await eventually(() => stream.isClosed(), "the pre-snapshot stream to be dropped");

      // The process survived, and a new Connect stream picks it up with its output history.
      assert.ok((await envd.process.list({})).processes.some((p) => p.pid === pid));
      const ctl = new AbortController();
      let replay = "";
      for await (const res of envd.process.connect({ process: { selector: { case: "pid", value: pid } } }, { signal: ctl.signal })) {
        const ev = res.event?.event;
        if (ev?.case === "data" && ev.value.output.case === "stdout") replay += Buffer.from(ev.value.output.value).toString();
        if (replay.includes("tick1\n") && /tick\d+\n$/.test(replay)) break;
      }
      ctl.abort();
      assert.match(replay, /^tick1\n/, "output from before the snapshot is still there");

      // Keep-alive is back; a second /health does not restore again.
      const after = await rawConnect(envd.port);
      assert.doesNotMatch(await rawHealth(after), /connection: close/i);
      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal(logsWith(envd.logs, "restored after snapshot").length, 1);
      assert.equal(after.isClosed(), false, "connections made after the restore are kept");
      after.socket.destroy();
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: 9 });
    });

    test("E2B flow: /freeze quiesces, /health does not restore, /init restores and sets the clock from its timestamp", async () => {
      const dir = tempDir("lc-clock");
      const clock = recorder(dir, "set-clock");
      await using envd = await startDaemon({ runtime, env: { ENVD_CLOCK_COMMAND: clock.path } });
      const idleStream = await rawConnect(envd.port);
      rawStartStream(idleStream, "/bin/sleep", ["30"]);
      await eventually(() => idleStream.received().includes("pid"), "the sleep's start event");

      const frozen = await envd.fetch("/freeze?maxWaitMs=50", { method: "POST" });
      assert.equal(frozen.status, 200);
      const result = (await frozen.json()) as Record<string, unknown>;
      for (const key of ["mode", "visited", "allowlisted", "truncated", "preFrozen", "requested", "frozen", "notFrozen", "failed", "unobservable", "sweepMs", "waitMs"]) {
        assert.ok(key in result, `FreezeResult has ${key}`);
      }
      assert.equal(result.mode, "legacy");
      assert.equal((await envd.fetch("/freeze", { method: "POST" })).status, 204, "no maxWaitMs: 204");

      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal(logsWith(envd.logs, "restored after snapshot").length, 0, "health checks during a freeze are not a resume");
      assert.equal(idleStream.isClosed(), false);

      const hostNs = (BigInt(Date.now()) + 3_600_000n) * 1_000_000n; // the host is an hour ahead
      const seconds = hostNs / 1_000_000_000n;
      const init = await postInit(envd, { timestamp: new Date(Number(hostNs / 1_000_000n)).toISOString() });
      assert.equal(init.status, 204);
      const restored = await eventually(() => logsWith(envd.logs, "restored after snapshot")[0], "the restore after /init");
      assert.equal(restored.trigger, "init");
      await eventually(() => idleStream.isClosed(), "the pre-snapshot stream to be dropped");
      const calls = clock.calls();
      assert.equal(calls.length, 1, `clock set once: ${calls.join(" | ")}`);
      const target = BigInt((calls[0] as string).replace(/^@/, "").split(".")[0] as string);
      assert.ok(target >= seconds && target <= seconds + 5n, `clock target ${target} ≈ host ${seconds}`);
      assert.ok(logsWith(envd.logs, "workload thawed").some((l) => l.reason === "init"));
    });

    test("/unfreeze rolls back: loops and keep-alive return, connections are not dropped, nothing is restored", async () => {
      await using envd = await startDaemon({ runtime });
      const stream = await rawConnect(envd.port);
      rawStartStream(stream, "/bin/sleep", ["30"]);
      await eventually(() => stream.received().includes("pid"), "the sleep's start event");
      assert.equal((await envd.fetch("/freeze", { method: "POST" })).status, 204);
      const res = await envd.fetch("/unfreeze", { method: "POST" });
      assert.equal(res.status, 204);
      await eventually(() => logsWith(envd.logs, "snapshot cancelled; resumed")[0], "the resume log");
      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal(logsWith(envd.logs, "restored after snapshot").length, 0);
      assert.equal(stream.isClosed(), false);
      const fresh = await rawConnect(envd.port);
      assert.doesNotMatch(await rawHealth(fresh), /connection: close/i);
      fresh.socket.destroy();
      stream.socket.destroy();
    });

    test("prepare with ?reclaim=1 syncs and drops the page cache; the reclaimer drops it above the threshold", async () => {
      const dir = tempDir("lc-reclaim");
      const meminfo = join(dir, "meminfo");
      const drop = join(dir, "drop_caches");
      // 90 % used counting the cache, 4 GiB of it droppable.
      writeFileSync(meminfo, "MemTotal: 8388608 kB\nMemFree: 838860 kB\nMemAvailable: 5000000 kB\nBuffers: 0 kB\nCached: 4194304 kB\nShmem: 0 kB\n");
      writeFileSync(drop, "");
      await using envd = await startDaemon({ runtime, env: { ENVD_MEMINFO_PATH: meminfo, ENVD_DROP_CACHES_PATH: drop } });
      await eventually(() => readFileSync(drop, "utf8") === "1", "the reclaimer's drop at 90 %");
      const dropped = await eventually(() => logsWith(envd.logs, "page cache dropped")[0], "the drop's log line");
      assert.equal(dropped.reason, "threshold");
      writeFileSync(drop, "");
      const res = await envd.fetch("/snapshot/prepare?reclaim=1", { method: "POST" });
      assert.equal(res.status, 204);
      assert.equal(readFileSync(drop, "utf8"), "1", "dropped before prepare answered");
      const prepared = await eventually(() => logsWith(envd.logs, "prepared for snapshot")[0], "the prepare log");
      assert.equal(prepared.droppedCaches, true);
      assert.equal((await envd.fetch("/health")).status, 204);
    });

    test("fstrim is bounded (2 s): a hanging fstrim is killed and prepare still answers 204", async () => {
      const dir = tempDir("lc-fstrim-hang");
      const fstrim = join(dir, "fstrim");
      const pidFile = join(dir, "fstrim.pid");
      // exec: the pid written is the sleep itself, the process the daemon must kill.
      writeFileSync(fstrim, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 30\n`);
      chmodSync(fstrim, 0o755);
      const drop = join(dir, "drop_caches");
      writeFileSync(drop, "");
      await using envd = await startDaemon({
        runtime,
        args: ["-flavor", "wrenn"],
        env: { ENVD_FSTRIM_COMMAND: fstrim, ENVD_DROP_CACHES_PATH: drop, ENVD_RUN_DIR: join(dir, "run") },
      });
      const res = await envd.fetch("/snapshot/prepare", { method: "POST" });
      assert.equal(res.status, 204);
      const pid = Number(readFileSync(pidFile, "utf8"));
      assert.ok(pid > 0);
      // Prepare waits for the child's end before it answers: by now it is killed and reaped.
      assert.equal(identity(pid), undefined, `the fstrim child ${pid} is gone`);
      const prepared = await eventually(() => logsWith(envd.logs, "prepared for snapshot")[0], "the prepare log");
      assert.equal((prepared.trim as { outcome: string }).outcome, "timeout");
      assert.equal(prepared.droppedCaches, true);
      assert.equal(readFileSync(drop, "utf8"), "1");
      assert.equal((await envd.fetch("/health")).status, 200, "the restore runs; the daemon still serves");
    });

    test("no fstrim in the image (the command does not exist): prepare still answers 204", async () => {
      const dir = tempDir("lc-fstrim-none");
      const drop = join(dir, "drop_caches");
      writeFileSync(drop, "");
      await using envd = await startDaemon({
        runtime,
        args: ["-flavor", "wrenn"],
        env: { ENVD_FSTRIM_COMMAND: join(dir, "no-such-fstrim"), ENVD_DROP_CACHES_PATH: drop, ENVD_RUN_DIR: join(dir, "run") },
      });
      const res = await envd.fetch("/snapshot/prepare", { method: "POST" });
      assert.equal(res.status, 204);
      const prepared = await eventually(() => logsWith(envd.logs, "prepared for snapshot")[0], "the prepare log");
      assert.equal((prepared.trim as { outcome: string }).outcome, "unavailable");
      assert.equal(prepared.synced, true);
      assert.equal(prepared.droppedCaches, true);
    });

    test("bad input: 400 with a JSON error, wrong method 405, token gate, /fsfreeze refused outside a VM", async () => {
      await using envd = await startDaemon({ runtime });
      for (const [path, message] of [
        ["/freeze?mode=everything", /invalid mode 'everything'/],
        ["/freeze?maxWaitMs=soon", /invalid maxWaitMs 'soon'/],
        ["/freeze?maxCgroups=0", /invalid maxCgroups/],
        ["/snapshot/prepare?reclaim=maybe", /invalid value for reclaim/],
      ] as const) {
        const res = await envd.fetch(path, { method: "POST" });
        assert.equal(res.status, 400, path);
        const body = (await res.json()) as { code: number; message: string };
        assert.equal(body.code, 400);
        assert.match(body.message, message);
      }
      assert.equal((await envd.fetch("/snapshot/prepare")).status, 405);
      assert.equal((await envd.fetch("/freeze")).status, 405);
      const fs = await envd.fetch("/fsfreeze", { method: "POST" });
      assert.equal(fs.status, 409);
      assert.match(((await fs.json()) as { message: string }).message, /only available inside a VM/);
      assert.equal((await envd.fetch("/fsthaw", { method: "POST" })).status, 409);

      assert.equal((await postInit(envd, { accessToken: "s3cret" })).status, 204);
      for (const path of ["/freeze", "/unfreeze", "/fsfreeze", "/fsthaw"]) {
        assert.equal((await envd.fetch(path, { method: "POST" })).status, 401, path);
      }
      assert.equal((await envd.fetch("/unfreeze", { method: "POST", headers: { "X-Access-Token": "s3cret" } })).status, 204);
      // In the e2b flavor prepare sits behind the token (issue 13.2; the wrenn flavor's exemption is
      // tested in auth-table.e2e.test.ts).
      assert.equal((await envd.fetch("/snapshot/prepare", { method: "POST" })).status, 401);
      assert.equal((await envd.fetch("/snapshot/prepare", { method: "POST", headers: { "X-Access-Token": "s3cret" } })).status, 204);
      const r = await runToEnd(envd.process, { process: { cmd: "/bin/echo", args: ["alive"] } }, { headers: { "X-Access-Token": "s3cret" } });
      assert.equal(r.stdout, "alive\n", "the daemon keeps serving after bad input");
    });
  });
}
