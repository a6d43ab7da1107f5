/**
 * envd in a real microVM: the compiled binary (npm run build), installed by deploy/install.sh into
 * a minimal rootfs with no Node, Bun or npm, booted by QEMU with busybox init as PID 1
 * (test/vm/image.sh builds it). Everything goes through the forwarded port, most of it through
 * the real e2b SDK. Then the whole machine is snapshotted, restored in a fresh QEMU, and checked
 * again: the processes, the connections, the clock.
 *
 * Run with `npm run test:vm` (root; builds the binary and the image first). Timings go to
 * $ENVD_VM_WORK/timings.json and are reported as test diagnostics.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox } from "e2b";
import { eventually, isRoot } from "../e2e/harness.ts";
import { freePort, INITRD, KERNEL, probe, Vm, type VmSpec, WORK } from "./qemu.ts";

const ENVD_VERSION = "0.6.4";
const GUEST_PORT_HEX = (49983).toString(16).toUpperCase().padStart(4, "0");

const skip = !isRoot
  ? "needs root"
  : !existsSync(KERNEL) || !existsSync(INITRD)
    ? "no guest image: run test/vm/image.sh (npm run test:vm does)"
    : false;

const sdk = (url: string) => Sandbox.create({ debug: true, sandboxUrl: url } as Parameters<typeof Sandbox.create>[0] & object);

/** Guest TCP sockets on port 49983: inode → state (hex, 01 = ESTABLISHED). */
async function guestConnections(sbx: Sandbox): Promise<Map<string, string>> {
  const r = await sbx.commands.run("cat /proc/net/tcp");
  const out = new Map<string, string>();
  for (const line of r.stdout.trim().split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1] ?? "";
    const state = f[3] ?? "";
    const inode = f[9] ?? "0";
    if (local.endsWith(`:${GUEST_PORT_HEX}`) && inode !== "0") out.set(inode, state);
  }
  return out;
}

/** The guest's wall clock in seconds (bash's $EPOCHREALTIME: microseconds). */
async function guestNow(sbx: Sandbox): Promise<number> {
  return Number((await sbx.commands.run("echo $EPOCHREALTIME")).stdout.trim());
}

/** An HTTP/1.1 keep-alive connection that stays idle in its agent's pool between requests. */
function keepAliveGet(agent: http.Agent, url: string): Promise<{ status: number; socket: Socket }> {
  return new Promise((resolve, reject) => {
    let socket: Socket | undefined;
    const req = http.get(url, { agent }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, socket: socket as Socket }));
    });
    req.on("socket", (s) => (socket = s));
    req.on("error", reject);
  });
}

describe("envd in a QEMU microVM (compiled binary, busybox init)", { skip }, () => {
  let spec: VmSpec;
  let vm: Vm;
  let sbx: Sandbox;
  const timings: Record<string, number | string> = {};

  before(async () => {
    spec = { name: "envd-vm", port: await freePort() };
    vm = await Vm.boot(spec);
    timings.bootToReadyMs = Math.round(await vm.waitHealthy());
    sbx = await sdk(vm.url);
  });

  after(async () => {
    await vm?.kill();
    timings.at = new Date().toISOString();
    writeFileSync(join(WORK, "timings.json"), `${JSON.stringify(timings, null, 2)}\n`);
    appendFileSync(join(WORK, "timings.jsonl"), `${JSON.stringify(timings)}\n`);
  });

  test("boots to a healthy envd: PID 1 is busybox init, envd is /usr/bin/envd, OOM-protected", async (t) => {
    t.diagnostic(`boot to first /health: ${timings.bootToReadyMs} ms`);
    assert.equal(await probe(`${vm.url}/health`), 204);
    const r = await sbx.commands.run(
      "readlink /proc/1/exe; readlink /proc/$(pidof envd)/exe; cat /proc/$(pidof envd)/oom_score_adj; cat /proc/self/oom_score_adj",
    );
    const [init, exe, daemonOom, childOom] = r.stdout.trim().split("\n");
    assert.equal(init, "/bin/busybox");
    assert.equal(exe, "/usr/bin/envd");
    // envd-run starts it at -1000; the daemon settles at -999 (still killable as a last resort).
    assert.ok(Number(daemonOom) <= -999, `daemon oom_score_adj ${daemonOom}`);
    assert.equal(childOom, "100");
  });

  test("metadata needs no native addon: nothing is unpacked into /run/envd or the user's /tmp", async () => {
    // A Stat reads metadata (xattrs through libc FFI, bound on first use).
    await sbx.files.getInfo("/tmp");
    const r = await sbx.commands.run("stat -c '%a %U' /run/envd; ls -A /run/envd | grep -c '[.]node$'; ls -A /tmp | grep -c '[.]node$'; true");
    assert.equal(r.stdout, "700 root\n0\n0\n");
  });

  test("the binary carries its version and commit and needs no Node, Bun or npm", async () => {
    const r = await sbx.commands.run("/usr/bin/envd -version; /usr/bin/envd -commit; command -v node bun npm || echo none");
    const [version, commit, runtimes] = r.stdout.trim().split("\n");
    assert.equal(version, ENVD_VERSION);
    // The commit npm run build stamped (git rev-parse HEAD, "-dirty" when src/ differs from it).
    assert.match(commit ?? "", /^[0-9a-f]{40}(-dirty)?$/);
    assert.equal(commit, execFileSync(join(WORK, "rootfs/usr/bin/envd"), ["-commit"], { encoding: "utf8" }).trim());
    assert.equal(runtimes, "none");
  });

  test("commands: output, exit codes, environment, working directory", async () => {
    const r = await sbx.commands.run("echo out; echo err >&2; echo $FOO; pwd", { envs: { FOO: "bar" }, cwd: "/tmp" });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout, "out\nbar\n/tmp\n");
    assert.equal(r.stderr, "err\n");
    await assert.rejects(sbx.commands.run("exit 3"), (err: Error & { exitCode?: number }) => {
      assert.equal(err.constructor.name, "CommandExitError");
      assert.equal(err.exitCode, 3);
      return true;
    });
  });

  test("commands run as another user with its supplementary groups (setpriv)", async () => {
    const r = await sbx.commands.run("id -un; id -Gn; echo $HOME; pwd", { user: "user" });
    const [name, groups, home, cwd] = r.stdout.trim().split("\n");
    assert.equal(name, "user");
    assert.deepEqual(groups?.split(" ").sort(), ["sandbox", "user"]);
    assert.equal(home, "/home/user");
    assert.equal(cwd, "/home/user");
  });

  test("PTY: an interactive bash with a terminal, resize, exit", async () => {
    const dec = new TextDecoder();
    const enc = new TextEncoder();
    let out = "";
    const term = await sbx.pty.create({ cols: 100, rows: 30, timeoutMs: 0, onData: (d) => {
        out += dec.decode(d);
      } });
    await sbx.pty.sendInput(term.pid, enc.encode("tty; stty size; echo pty-$((6*7))\n"));
    await eventually(() => out.includes("pty-42"), "PTY output", 30_000);
    assert.match(out, /\/dev\/pts\/\d+/);
    assert.match(out, /\b30 100\b/);
    await sbx.pty.resize(term.pid, { cols: 120, rows: 40 });
    await sbx.pty.sendInput(term.pid, enc.encode("stty size\n"));
    await eventually(() => /\b40 120\b/.test(out), "resized PTY", 30_000);
    await sbx.pty.sendInput(term.pid, enc.encode("exit\n"));
    const r = await term.wait();
    assert.equal(r.exitCode, 0);
  });

  test("files: write and read back through the SDK, owned by the user who wrote them", async () => {
    const bytes = randomBytes(256 * 1024);
    await sbx.files.write("/home/user/data.bin", bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer, { user: "user" });
    await sbx.files.write("/home/user/hello.txt", "hello from the host\n", { user: "user" });
    const back = await sbx.files.read("/home/user/data.bin", { format: "bytes", user: "user" });
    assert.ok(Buffer.from(back).equals(bytes));
    assert.equal(await sbx.files.read("/home/user/hello.txt", { user: "user" }), "hello from the host\n");
    const r = await sbx.commands.run("stat -c '%U %s' /home/user/data.bin");
    assert.equal(r.stdout.trim(), `user ${bytes.length}`);
  });

  test("init restarts envd when it dies", async (t) => {
    const oldPid = (await sbx.commands.run("pidof envd")).stdout.trim();
    assert.match(oldPid, /^\d+$/);
    // Detached from the command, so the command ends before envd is killed.
    await sbx.commands.run("(sleep 0.5; kill -KILL $(pidof envd)) >/dev/null 2>&1 </dev/null &");
    const t0 = performance.now();
    const newPid = await eventually(
      async () => {
        const pid = (await sbx.commands.run("pidof envd", { requestTimeoutMs: 5_000 })).stdout.trim();
        return pid !== oldPid && /^\d+$/.test(pid) ? pid : undefined;
      },
      "a new envd",
      60_000,
    );
    timings.respawnToReadyMs = Math.round(performance.now() - t0 - 500);
    t.diagnostic(`envd ${oldPid} killed, ${newPid} ready about ${timings.respawnToReadyMs} ms later`);
    assert.equal(await probe(`${vm.url}/health`), 204);
  });

  // One process streams output across both snapshots.
  const ticks: number[] = [];
  const onTick = (d: string) => {
    for (const m of d.matchAll(/tick (\d+)/g)) ticks.push(Number(m[1]));
  };
  let tickerPid = 0;
  /** How the host's current stream of the ticker ended ("error: ..." when its connection died). */
  let tickerStream: Promise<string> = Promise.resolve("none");
  const watchStream = (handle: { wait(): Promise<unknown> }) =>
    handle.wait().then(
      () => "exited",
      (err: unknown) => `error: ${String(err)}`,
    );

  test("the guest clock is put an hour behind (only /init may set it right)", async () => {
    // Long before the first snapshot: the daemon sees the step as a plain clock change.
    await sbx.commands.run("date -u -s @$(( $(date +%s) - 3600 )) >/dev/null");
    assert.ok(Date.now() / 1000 - (await guestNow(sbx)) > 3000);
  });

  test("a process started before the snapshots streams its output", async () => {
    const handle = await sbx.commands.run("i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done", {
      background: true,
      timeoutMs: 0,
      onStdout: onTick,
    });
    tickerPid = handle.pid;
    tickerStream = watchStream(handle);
    await eventually(() => ticks.length >= 3, "ticks", 30_000);
  });

  // Wrenn's host calls /snapshot/prepare before the pause and /health, then /init, after the
  // resume; E2B's orchestrator calls /freeze before and /init (with the time) after.
  for (const flow of ["wrenn", "e2b"] as const) {
    const title =
      flow === "wrenn"
        ? "snapshot and restore into a fresh QEMU, Wrenn's way: /snapshot/prepare, then /health and /init"
        : "snapshot and restore into a fresh QEMU, E2B's way: /freeze, then /init";
    describe(title, () => {
      let agent: http.Agent;
      let idleSocket: Socket;
      let idleSocketClosed = false;
      let preSnapshotConnections: string[] = [];
      let lastTickBefore = 0;
      let streamBefore: Promise<string>;
      let downtimeS = 0;
      let behindBeforeInit: number | undefined;
      let initAt = 0;
      const tag = (k: string) => `${flow}.${k}`;

      before(async () => {
        // A file and an idle keep-alive connection.
        await sbx.files.write(`/home/user/before-${flow}.txt`, `written before the ${flow} snapshot\n`, { user: "user" });
        agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        const first = await keepAliveGet(agent, `${vm.url}/health`);
        assert.equal(first.status, 204);
        idleSocket = first.socket;
        idleSocket.once("close", () => (idleSocketClosed = true));
        const conns = await guestConnections(sbx);
        preSnapshotConnections = [...conns].filter(([, state]) => state === "01").map(([inode]) => inode);
        assert.ok(preSnapshotConnections.length >= 2, `expected the stream and the idle connection, got ${preSnapshotConnections.length}`);
        streamBefore = tickerStream;
        lastTickBefore = ticks.at(-1) as number;

        const quiesce =
          flow === "wrenn"
            ? await fetch(`${vm.url}/snapshot/prepare`, { method: "POST" })
            : await fetch(`${vm.url}/freeze?maxWaitMs=2000`, { method: "POST" });
        const quiesceBody = await quiesce.text();
        assert.ok(quiesce.status === 204 || quiesce.status === 200, `${quiesce.status} ${quiesceBody}`);

        const saved = await vm.snapshot(join(WORK, `envd-vm.${flow}.state`));
        timings[tag("snapshotPauseMs")] = Math.round(saved.pauseMs);
        timings[tag("snapshotSaveMs")] = Math.round(saved.saveMs);
        timings[tag("snapshotMiB")] = Math.round(saved.bytes / 1048576);
        const restored = await Vm.restore(spec, saved.file);
        vm = restored.vm;
        rmSync(saved.file, { force: true });
        timings[tag("restoreLoadMs")] = Math.round(restored.loadMs);
        // The guest's clocks stood still from the pause until it ran again.
        downtimeS = (restored.resumedAt - saved.stoppedAt) / 1000;
        timings[tag("pausedToRunningMs")] = Math.round(downtimeS * 1000);
        timings[tag("restoreToReadyMs")] = Math.round(await vm.waitHealthy(60_000));

        // Wrenn: /health ran the restore; commands work before /init. E2B: the workload stays
        // frozen until /init, which is the first thing the orchestrator sends.
        if (flow === "wrenn") behindBeforeInit = Date.now() / 1000 - (await guestNow(sbx));
        initAt = Date.now() / 1000;
        const t = performance.now();
        const init = await fetch(`${vm.url}/init`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ timestamp: new Date().toISOString() }),
        });
        timings[tag("initAfterRestoreMs")] = Math.round(performance.now() - t);
        assert.equal(init.status, 204, await init.text());
      });

      test("restore-to-ready is measured", (t) => {
        t.diagnostic(
          `snapshot: pause ${timings[tag("snapshotPauseMs")]} ms, save ${timings[tag("snapshotSaveMs")]} ms, ` +
            `${timings[tag("snapshotMiB")]} MiB; restore: state loaded in ${timings[tag("restoreLoadMs")]} ms, ` +
            `first /health ${timings[tag("restoreToReadyMs")]} ms after QEMU started, then /init took ${timings[tag("initAfterRestoreMs")]} ms`,
        );
        assert.ok(Number(timings[tag("restoreToReadyMs")]) > 0);
      });

      test("the host's connections from before are closed, and new ones work", async () => {
        await eventually(() => idleSocketClosed, "the idle keep-alive connection to close on the host");
        const again = await keepAliveGet(agent, `${vm.url}/health`);
        assert.equal(again.status, 204);
        assert.notEqual(again.socket, idleSocket);
        const reused = await keepAliveGet(agent, `${vm.url}/health`);
        assert.equal(reused.status, 204);
        assert.equal(reused.socket, again.socket, "a new keep-alive connection serves a second request");
        agent.destroy();
        // The SDK stream from before ends with an error instead of hanging.
        assert.match(await streamBefore, /^error/);
      });

      test("the connections from before the snapshot are closed inside the guest", async () => {
        const stillOpen = await eventually(
          async () => {
            const now = await guestConnections(sbx);
            const open = preSnapshotConnections.filter((inode) => now.get(inode) === "01");
            return open.length === 0 ? [] : undefined;
          },
          "pre-snapshot connections to close in the guest",
          30_000,
        );
        assert.deepEqual(stillOpen, []);
      });

      test("the process started before the snapshot is still listed and still streaming", async () => {
        const list = await sbx.commands.list();
        assert.ok(list.some((p) => p.pid === tickerPid), `pid ${tickerPid} not in ${JSON.stringify(list.map((p) => p.pid))}`);
        const handle = await sbx.commands.connect(tickerPid, { timeoutMs: 0, onStdout: onTick });
        tickerStream = watchStream(handle);
        await eventually(() => ticks.some((n) => n > lastTickBefore + 2), "new ticks after the restore", 30_000);
      });

      test("files written before the snapshot are still there", async () => {
        assert.equal(await sbx.files.read(`/home/user/before-${flow}.txt`), `written before the ${flow} snapshot\n`);
      });

      test("/init sets the clock the restore left behind (an hour, then by the downtime)", async () => {
        if (behindBeforeInit !== undefined) {
          assert.ok(behindBeforeInit > 3000, `the guest clock should still be an hour behind before /init, is ${behindBeforeInit.toFixed(1)} s`);
        }
        // Without /init the guest would be behind by at least the downtime, far more than 50 ms.
        const guest = await guestNow(sbx);
        const now = Date.now() / 1000;
        // Set to the host's time at /init, and read back since: between the two host readings
        // (50 ms for what the guest's clock and its reading can be off by).
        assert.ok(
          guest >= initAt - 0.05 && guest <= now + 0.05,
          `guest ${guest.toFixed(3)}, host between ${initAt.toFixed(3)} and ${now.toFixed(3)} (down ${downtimeS.toFixed(3)} s)`,
        );
      });
    });
  }

  test("after both restores the process can be killed, and a new SDK client works", async () => {
    assert.ok(await sbx.commands.kill(tickerPid));
    assert.match(await tickerStream, /^error: .*signal: killed/);
    await eventually(async () => !(await sbx.commands.list()).some((p) => p.pid === tickerPid), "the ticker to go");
    const fresh = await sdk(vm.url);
    const r = await fresh.commands.run("echo restored; cat /home/user/before-wrenn.txt");
    assert.equal(r.stdout, "restored\nwritten before the wrenn snapshot\n");
  });
});
