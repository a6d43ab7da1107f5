/**
 * cgroup v2 placement and freezing on this machine's real cgroup v2 hierarchy, under a private
 * sub-root each test creates (`-cgroup-root`) and removes. Skipped with the reason where cgroup v2
 * or root is not available.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { postInit } from "./control-fakes.ts";
import { type Daemon, eventually, RUNTIMES, startDaemon } from "./harness.ts";
import { cgroup2Mount, cgroupOf, cgroupsUnavailable, removeCgroupTree } from "./lifecycle-fixtures.ts";

const skip = cgroupsUnavailable();

interface SubRoot extends Disposable {
  dir: string;
  /** Path as /proc/<pid>/cgroup shows it. */
  rel: string;
}

function subRoot(): SubRoot {
  const mount = cgroup2Mount() as string;
  const name = `envd-test-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  const dir = join(mount, name);
  mkdirSync(dir);
  return { dir, rel: `/${name}`, [Symbol.dispose]: () => removeCgroupTree(dir) };
}

/** Starts a long-running command and returns its pid (the stream is left to run). */
async function startSleeper(envd: Daemon, pty = false): Promise<{ pid: number; stop(): Promise<void> }> {
  const ctl = new AbortController();
  const stream = envd.process.start(
    { process: { cmd: "/bin/sleep", args: ["60"] }, ...(pty ? { pty: { size: { cols: 80, rows: 24 } } } : {}) },
    { signal: ctl.signal },
  );
  for await (const res of stream) {
    const ev = res.event?.event;
    if (ev?.case === "start") {
      const pid = ev.value.pid;
      return {
        pid,
        async stop() {
          await envd.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: 9 });
          ctl.abort();
        },
      };
    }
  }
  throw new Error("no start event");
}

const CAP_SYS_RESOURCE = 24;
function hasCapability(bit: number): boolean {
  const hex = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0";
  return ((BigInt(`0x${hex}`) >> BigInt(bit)) & 1n) === 1n;
}

const frozenState = (dir: string) => /^frozen (\d)$/m.exec(readFileSync(join(dir, "cgroup.events"), "utf8"))?.[1];

for (const runtime of RUNTIMES) {
  describe(`cgroups [${runtime}]`, { skip }, () => {
    test("each child joins its group before it runs: pipes in user, PTYs in ptys; controllers the root lacks are skipped", async (t) => {
      using root = subRoot();
      await using envd = await startDaemon({ runtime, args: ["--cgroup-root", root.dir] });
      for (const g of ["user", "ptys", "socats"]) assert.ok(existsSync(join(root.dir, g)), `${g} created`);
      const ready = await eventually(() => envd.logs.find((l) => l.msg === "cgroups ready"), "the cgroups log");
      const offered = readFileSync(join(root.dir, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean);
      for (const c of ["cpu", "io", "memory"]) {
        if (offered.includes(c)) assert.ok((ready.controllers as string[]).includes(c), `${c} enabled`);
        else assert.ok((ready.skipped as string[]).includes(c), `${c} not offered here: skipped`);
      }
      if (offered.includes("memory")) {
        assert.equal(readFileSync(join(root.dir, "user", "memory.max"), "utf8").trim(), String(ready.workloadMemoryBytes));
      }

      const pipe = await startSleeper(envd);
      const pty = await startSleeper(envd, true);
      // Once the wrapper has exec'd the program, the placement (done before the exec) is final.
      for (const p of [pipe, pty]) await eventually(() => readFileSync(`/proc/${p.pid}/comm`, "utf8").trim() === "sleep", "the exec");
      assert.equal(cgroupOf(pipe.pid), `${root.rel}/user`);
      assert.equal(cgroupOf(pty.pid), `${root.rel}/ptys`);
      assert.notEqual(cgroupOf(envd.pid), `${root.rel}/user`, "the daemon itself stays outside the workload's groups");
      // The wrapper also gave the child its OOM score back, while the daemon protects itself.
      assert.equal(readFileSync(`/proc/${pipe.pid}/oom_score_adj`, "utf8").trim(), "100");
      if (hasCapability(CAP_SYS_RESOURCE)) {
        assert.equal(readFileSync(`/proc/${envd.pid}/oom_score_adj`, "utf8").trim(), "-999");
      } else t.diagnostic("daemon oom_score_adj not checked: this machine withholds CAP_SYS_RESOURCE, needed to lower it");
      await pipe.stop();
      await pty.stop();
    });

    test("/freeze freezes user and ptys (and refuses new processes) while the daemon keeps answering; /unfreeze and /init thaw", async () => {
      using root = subRoot();
      await using envd = await startDaemon({ runtime, args: ["--cgroup-root", root.dir] });
      const sleeper = await startSleeper(envd);
      const res = await envd.fetch("/freeze?maxWaitMs=2000", { method: "POST" });
      assert.equal(res.status, 200);
      const result = (await res.json()) as Record<string, number | string | boolean>;
      assert.equal(result.mode, "legacy");
      assert.equal(result.requested, 2);
      assert.equal(result.frozen, 2);
      assert.equal(result.notFrozen, 0);
      assert.equal(result.failed, 0);
      assert.equal(frozenState(join(root.dir, "user")), "1");
      assert.equal(frozenState(join(root.dir, "ptys")), "1");
      assert.equal((await envd.fetch("/health")).status, 204, "the daemon is not frozen");
      await assert.rejects(
        envd.process.start({ process: { cmd: "/bin/true" } })[Symbol.asyncIterator]().next(),
        (err: unknown) => err instanceof ConnectError && err.code === Code.Unavailable && /frozen/.test(err.rawMessage),
      );

      assert.equal((await envd.fetch("/unfreeze", { method: "POST" })).status, 204);
      assert.equal(frozenState(join(root.dir, "user")), "0");
      const r = await envd.process.start({ process: { cmd: "/bin/true" } })[Symbol.asyncIterator]().next();
      assert.equal(r.done, false, "processes start again");

      assert.equal((await envd.fetch("/freeze?maxWaitMs=2000", { method: "POST" })).status, 200);
      assert.equal(frozenState(join(root.dir, "user")), "1");
      assert.equal((await postInit(envd, {})).status, 204);
      assert.equal(frozenState(join(root.dir, "user")), "0", "every /init thaws");
      await sleeper.stop();
    });

    test("hierarchy mode freezes other groups under the root but never the forwarders' group", async () => {
      using root = subRoot();
      await using envd = await startDaemon({ runtime, args: ["--cgroup-root", root.dir] });
      const other = join(root.dir, "other");
      mkdirSync(other);
      const outsider = spawn("/bin/sleep", ["60"], { stdio: "ignore" });
      writeFileSync(join(other, "cgroup.procs"), String(outsider.pid));
      try {
        const res = await envd.fetch("/freeze?mode=hierarchy&maxWaitMs=2000", { method: "POST" });
        assert.equal(res.status, 200);
        const result = (await res.json()) as Record<string, number | string | boolean>;
        assert.equal(result.mode, "hierarchy");
        assert.equal(result.visited, 4, "other, ptys, socats, user");
        assert.equal(result.allowlisted, 1, "socats");
        assert.equal(result.frozen, 3);
        assert.equal(frozenState(other), "1");
        assert.equal(frozenState(join(root.dir, "socats")), "0");
        assert.equal((await envd.fetch("/unfreeze", { method: "POST" })).status, 204);
        assert.equal(frozenState(other), "0");
      } finally {
        outsider.kill("SIGKILL");
        await new Promise((r) => outsider.once("exit", r));
      }
    });

    test("-no-cgroups: children stay in the daemon's cgroup", async () => {
      using root = subRoot();
      await using envd = await startDaemon({ runtime, args: ["--cgroup-root", root.dir, "--no-cgroups"] });
      assert.equal(existsSync(join(root.dir, "user")), false);
      const sleeper = await startSleeper(envd);
      assert.equal(cgroupOf(sleeper.pid), cgroupOf(envd.pid));
      await sleeper.stop();
    });
  });
}
