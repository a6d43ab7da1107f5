/**
 * Reaping: orphaned grandchildren of user commands must not pile up as zombies, and the exit codes
 * of the daemon's own children must never be stolen. The daemon runs as PID 1 of a new PID
 * namespace (`unshare --pid --fork`), as in a VM whose init it is, or with `-reaper on` under this
 * test (a child subreaper). A control case shows the zombies that pile up without the reaper.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { describe, test } from "node:test";
import { type Daemon, eventually, isRoot, RUNTIMES, runToEnd, startDaemon } from "./harness.ts";
import { descendantStates } from "./lifecycle-fixtures.ts";

const UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"];
/** Why a PID namespace cannot be had here: runs `true` once under the same unshare the tests use. */
function pidNamespaceUnavailable(): string | undefined {
  if (!isRoot) return "needs root for a PID namespace";
  try {
    execFileSync(UNSHARE[0] as string, [...UNSHARE.slice(1), "true"], { stdio: ["ignore", "ignore", "pipe"] });
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string | Buffer };
    const said = String(e.stderr ?? "").trim() || e.message;
    return `cannot run in a new PID namespace (${UNSHARE.join(" ")}): ${said.split("\n")[0]}`;
  }
}
const skipPid1 = pidNamespaceUnavailable();

/** Runs a shell script through Start and returns its exit code. */
async function sh(envd: Daemon, script: string): Promise<number | undefined> {
  const r = await runToEnd(envd.process, { process: { cmd: "/bin/sh", args: ["-c", script] }, stdin: false });
  return r.end?.exitCode;
}

const zombies = (root: number) => descendantStates(root).filter((p) => p.state === "Z");
const byComm = (root: number, comm: string) => descendantStates(root).filter((p) => p.comm === comm && p.state !== "Z");

/** The host pid of the process that is PID 1 inside unshare's namespace. */
function nsInit(unsharePid: number): number {
  const child = descendantStates(unsharePid).find((p) => p.ppid === unsharePid);
  if (!child) throw new Error("no process inside the namespace");
  return child.pid;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

for (const runtime of RUNTIMES) {
  describe(`reaping [${runtime}]`, () => {
    test("as PID 1: the daemon runs under its own small init, which reaps orphans and never steals exit codes", { skip: skipPid1 }, async () => {
      await using envd = await startDaemon({ runtime, wrap: UNSHARE });
      const init = nsInit(envd.pid);
      const started = envd.logs.find((l) => l.msg === "init: daemon started");
      assert.equal(started?.pid1, true);
      assert.equal(readFileSync(`/proc/${init}/cmdline`, "utf8").includes("main.ts"), true, "PID 1 is our init");

      // An orphan is re-parented to PID 1 (the init), not to the daemon.
      assert.equal(await sh(envd, "(exec sleep 300 &); exit 0"), 0);
      const [long] = await eventually(() => byComm(envd.pid, "sleep"), "the orphaned sleep");
      assert.equal(long?.ppid, init);

      // A burst of orphans that exit, while our own children exit with a code of their own.
      const codes = await Promise.all([
        sh(envd, "for i in $(seq 30); do (exec sleep 0.2 &); done; exit 0"),
        ...Array.from({ length: 8 }, (_, i) => sh(envd, `(exec sleep 0.1 &); (exec true &); exit ${10 + i}`)),
      ]);
      assert.deepEqual(codes, [0, 10, 11, 12, 13, 14, 15, 16, 17], "every exit code reaches its stream");
      await eventually(() => byComm(envd.pid, "sleep").length === 1 && zombies(envd.pid).length === 0, "the orphans to be reaped");

      process.kill(long?.pid as number, "SIGKILL");
      await eventually(() => byComm(envd.pid, "sleep").length === 0 && zombies(envd.pid).length === 0, "the long orphan to be reaped");
      // The daemon's own children still end normally.
      assert.equal(await sh(envd, "exit 3"), 3);
      process.kill(init, "SIGTERM"); // unshare ignores SIGTERM; the init forwards it to the daemon
    });

    test("control: as PID 1 with -reaper off, orphans stay zombies (what the init prevents)", { skip: skipPid1 }, async () => {
      await using envd = await startDaemon({ runtime, wrap: UNSHARE, args: ["--reaper", "off"] });
      const daemon = nsInit(envd.pid);
      assert.equal(await sh(envd, "for i in $(seq 5); do (exec true &); done; exit 0"), 0);
      await eventually(() => zombies(envd.pid).filter((z) => z.ppid === daemon).length >= 5, "zombies to pile up");
      process.kill(daemon, "SIGTERM");
    });

    test("-reaper on (not PID 1): the init is a child subreaper; orphans go to it and are reaped", async () => {
      await using envd = await startDaemon({ runtime, args: ["--reaper", "on"] });
      const started = envd.logs.find((l) => l.msg === "init: daemon started");
      assert.equal(started?.subreaper, true);
      assert.equal(await sh(envd, "(exec sleep 300 &); exit 0"), 0);
      const [long] = await eventually(() => byComm(envd.pid, "sleep"), "the orphaned sleep");
      assert.equal(long?.ppid, envd.pid, "re-parented to the subreaper, not to the machine's PID 1");
      assert.equal(await sh(envd, "for i in $(seq 20); do (exec true &); done; exit 5"), 5);
      await eventually(() => zombies(envd.pid).length === 0, "no zombies");
      process.kill(long?.pid as number, "SIGKILL");
      await eventually(() => byComm(envd.pid, "sleep").length === 0 && zombies(envd.pid).length === 0, "the orphan to be reaped");
    });

    test("the init restarts a daemon that died (a crash, the OOM killer) on the same port", async () => {
      const port = await freePort();
      await using envd = await startDaemon({ runtime, args: ["--reaper", "on", "--port", String(port)] });
      assert.equal(envd.port, port);
      const daemon = descendantStates(envd.pid).find((p) => p.ppid === envd.pid);
      assert.ok(daemon);
      process.kill(daemon.pid, "SIGKILL");
      await eventually(() => envd.logs.some((l) => l.msg === "init: daemon exited unexpectedly; restarting"), "the restart");
      await eventually(() => envd.logs.filter((l) => l.msg === "listening").length === 2, "the new daemon listening");
      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal(await sh(envd, "exit 4"), 4);
    });
  });
}
