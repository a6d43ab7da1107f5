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
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, writeFileSync } from "node:fs";
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
    assert.deepEqual(r.stdout.trim().split("\n"), ["/bin/busybox", "/usr/bin/envd", "-1000", "100"]);
  });

  test("the binary carries its version and commit and needs no Node, Bun or npm", async () => {
    const r = await sbx.commands.run("/usr/bin/envd -version; /usr/bin/envd -commit; command -v node bun npm || echo none");
    const [version, commit, runtimes] = r.stdout.trim().split("\n");
    assert.equal(version, ENVD_VERSION);
    assert.match(commit ?? "", /^[0-9a-f]{40}(-dirty)?$/);
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
    const term = await sbx.pty.create({ cols: 100, rows: 30, timeoutMs: 0, onData: (d) => void (out += dec.decode(d)) });
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

  describe("snapshot and restore into a fresh QEMU", () => {
    const ticks: number[] = [];
    let ticker: Awaited<ReturnType<Sandbox["commands"]["run"]>> & { pid: number };
    let tickerEnded: Promise<string>;
    let agent: http.Agent;
    let idleSocket: Socket;
    let idleSocketClosed = false;
    let preSnapshotConnections: string[] = [];
    let hasPrepare = false;

    before(async () => {
      // A process streaming output, a file, an idle keep-alive connection, and a clock one hour
      // behind (so that only /init can bring it back).
      const handle = await sbx.commands.run("i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done", {
        background: true,
        timeoutMs: 0,
        onStdout: (d) => {
          for (const m of d.matchAll(/tick (\d+)/g)) ticks.push(Number(m[1]));
        },
      });
      ticker = handle as unknown as typeof ticker;
      tickerEnded = handle.wait().then(
        () => "exited",
        (err: unknown) => `error: ${String(err)}`,
      );
      await eventually(() => ticks.length >= 3, "ticks before the snapshot", 30_000);
      await sbx.files.write("/home/user/before-snapshot.txt", "written before the snapshot\n", { user: "user" });
      await sbx.commands.run("date -u -s @$(( $(date +%s) - 3600 )) >/dev/null");

      agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const first = await keepAliveGet(agent, `${vm.url}/health`);
      assert.equal(first.status, 204);
      idleSocket = first.socket;
      idleSocket.once("close", () => (idleSocketClosed = true));

      // What Wrenn's host does before a pause, when this daemon offers it.
      const prepare = await fetch(`${vm.url}/snapshot/prepare`, { method: "POST" });
      hasPrepare = prepare.status === 204;
      await prepare.arrayBuffer();

      const conns = await guestConnections(sbx);
      preSnapshotConnections = [...conns].filter(([, state]) => state === "01").map(([inode]) => inode);
      assert.ok(preSnapshotConnections.length >= 2, `expected the stream and the idle connection, got ${preSnapshotConnections.length}`);

      const lastBefore = ticks.at(-1) as number;
      const saved = await vm.snapshot(join(WORK, "envd-vm.state"));
      timings.snapshotPauseMs = Math.round(saved.pauseMs);
      timings.snapshotSaveMs = Math.round(saved.saveMs);
      timings.snapshotMiB = Math.round(saved.bytes / 1048576);
      timings.ticksBeforeSnapshot = lastBefore;

      const restored = await Vm.restore(spec, saved.file);
      vm = restored.vm;
      timings.restoreLoadMs = Math.round(restored.loadMs);
      timings.restoreToReadyMs = Math.round(await vm.waitHealthy(60_000));
    });

    test("restore-to-ready is measured", (t) => {
      t.diagnostic(
        `snapshot: pause ${timings.snapshotPauseMs} ms, save ${timings.snapshotSaveMs} ms, ${timings.snapshotMiB} MiB; ` +
          `restore: state loaded in ${timings.restoreLoadMs} ms, first /health ${timings.restoreToReadyMs} ms after QEMU started`,
      );
      assert.ok(Number(timings.restoreToReadyMs) > 0);
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
      const ended = await tickerEnded;
      assert.match(ended, /^error/);
    });

    test("the connections from before the snapshot are closed inside the guest", async (t) => {
      if (!hasPrepare) {
        t.skip("POST /snapshot/prepare is not implemented (issue 7): restore recovery not checked");
        return;
      }
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

    test("a process started before the snapshot is still listed and still streaming", async () => {
      const list = await sbx.commands.list();
      const info = list.find((p) => p.pid === ticker.pid);
      assert.ok(info, `pid ${ticker.pid} not in ${JSON.stringify(list.map((p) => p.pid))}`);
      const lastBefore = Number(timings.ticksBeforeSnapshot);
      const seen: number[] = [];
      const handle = await sbx.commands.connect(ticker.pid, {
        timeoutMs: 0,
        onStdout: (d) => {
          for (const m of d.matchAll(/tick (\d+)/g)) seen.push(Number(m[1]));
        },
      });
      await eventually(() => seen.some((n) => n > lastBefore + 2), "new ticks after the restore", 30_000);
      assert.ok(await sbx.commands.kill(ticker.pid));
      await handle.wait().catch(() => {});
      await eventually(async () => !(await sbx.commands.list()).some((p) => p.pid === ticker.pid), "the ticker to go");
    });

    test("files written before the snapshot are still there", async () => {
      assert.equal(await sbx.files.read("/home/user/before-snapshot.txt"), "written before the snapshot\n");
    });

    test("the clock stays behind after a restore until /init sets it", async () => {
      const host0 = Date.now() / 1000;
      const behind = host0 - (await guestNow(sbx));
      assert.ok(behind > 3000, `the guest clock should still be an hour behind, is ${behind.toFixed(1)} s`);
      const t1 = Date.now() / 1000;
      const res = await fetch(`${vm.url}/init`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ timestamp: new Date().toISOString() }),
      });
      assert.equal(res.status, 204, await res.text());
      const guest = await guestNow(sbx);
      const t2 = Date.now() / 1000;
      // Set to the host's time within the resolution of the setting itself (whole seconds when
      // the guest's `date` takes no fraction), and read back between t1 and t2.
      assert.ok(guest >= t1 - 1 && guest <= t2 + 1, `guest ${guest}, host between ${t1} and ${t2}`);
    });

    test("a new SDK client works against the restored VM", async () => {
      const fresh = await sdk(vm.url);
      const r = await fresh.commands.run("echo restored; cat /home/user/before-snapshot.txt");
      assert.equal(r.stdout, "restored\nwritten before the snapshot\n");
    });
  });
});
