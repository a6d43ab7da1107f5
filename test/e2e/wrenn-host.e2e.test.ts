/**
 * The Wrenn host, today, plays its part against the daemon in the Wrenn flavor: exactly the calls
 * of anchors-2026-12 §1.1, in the order the host makes them (test/e2e/wrenn-host.ts makes them
 * the way its Go client does, Connect calls in the binary codec).
 *
 *   boot:   health poll → /init (snake_case, new lifecycle_id) → volumes mount → PUT/GET /files →
 *           Exec → activity
 *   pause:  memory preload (start, wait) → /snapshot/prepare
 *   resume: /init with a new lifecycle_id → Process/List until it answers
 *
 * Nothing here touches the machine: the volume is a loop device on a sparse file behind a fake
 * /sys/block serial, the memory walk reads a 128 KiB file as "/dev/mem", the page-cache drop
 * writes a temp file and fstrim is a recorder. (The real thing runs in the QEMU VM test.)
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { ENVD_VERSION } from "../../src/version.ts";
import { recorder, tempDir } from "./control-fakes.ts";
import { descendantsOf, eventually, isRoot, ROOT, RUNTIMES, startDaemon } from "./harness.ts";
import { WrennHost } from "./wrenn-host.ts";

/**
 * Why the volume cannot be played here, or false when it can: does once what the fake machine and
 * the daemon do with it (a loop device over a sparse image, mkfs.ext4, mount, umount) and undoes it.
 */
function volumeUnavailable(): string | false {
  if (!isRoot) return "needs root (a loop device and mount for the volume)";
  const dir = mkdtempSync(join(tmpdir(), "envd-wrenn-probe-"));
  const image = join(dir, "probe.img");
  const mnt = join(dir, "mnt");
  let loop = "";
  let mounted = false;
  try {
    mkdirSync(mnt);
    writeFileSync(image, "");
    execFileSync("truncate", ["-s", "8M", image]);
    loop = execFileSync("losetup", ["-f", "--show", image], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
    execFileSync("mkfs.ext4", ["-q", "-F", loop], { stdio: ["ignore", "ignore", "pipe"] });
    execFileSync("mount", [loop, mnt], { stdio: ["ignore", "ignore", "pipe"] });
    mounted = true;
    return false;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string | Buffer };
    const said = String(e.stderr ?? "").trim() || e.message;
    return `cannot attach, format and mount a loop device here (losetup, mkfs.ext4, mount): ${said.split("\n")[0]}`;
  } finally {
    if (mounted) execFileSync("umount", [mnt], { stdio: "ignore" });
    if (loop) execFileSync("losetup", ["-d", loop], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  }
}
const skip = volumeUnavailable();

/** A machine of its own for one daemon: run dir, fake /sys/block with a loop disk, tiny "RAM". */
function fakeMachine(serial: string) {
  const dir = mkdtempSync(join(tmpdir(), "envd-wrenn-host-"));
  const paths = {
    dir,
    runDir: join(dir, "run-wrenn"),
    sysBlock: join(dir, "sys-block"),
    dev: join(dir, "dev"),
    iomem: join(dir, "iomem"),
    devMem: join(dir, "mem"),
    dropCaches: join(dir, "drop_caches"),
    fstrim: join(dir, "fstrim"),
    fstrimLog: join(dir, "fstrim.log"),
    image: join(dir, "vol.img"),
    mnt: join(dir, "mnt", "vol-1"),
    loop: "",
  };
  mkdirSync(join(paths.sysBlock, "vdb"), { recursive: true });
  mkdirSync(paths.dev);
  writeFileSync(join(paths.sysBlock, "vdb", "serial"), `${serial}\n`);
  writeFileSync(paths.image, "");
  execFileSync("truncate", ["-s", "64M", paths.image]);
  paths.loop = execFileSync("losetup", ["-f", "--show", paths.image], { encoding: "utf8" }).trim();
  symlinkSync(paths.loop, join(paths.dev, "vdb"));
  writeFileSync(paths.iomem, "00000000-0000ffff : Reserved\n00010000-0002ffff : System RAM\n");
  writeFileSync(paths.devMem, Buffer.alloc(0x30000, 7));
  writeFileSync(paths.dropCaches, "");
  writeFileSync(paths.fstrim, `#!/bin/sh\necho trimmed >> '${paths.fstrimLog}'\n`);
  chmodSync(paths.fstrim, 0o755);
  const env = {
    ENVD_RUN_DIR: paths.runDir,
    ENVD_SYS_BLOCK_DIR: paths.sysBlock,
    ENVD_DEV_DIR: paths.dev,
    ENVD_IOMEM_PATH: paths.iomem,
    ENVD_DEV_MEM_PATH: paths.devMem,
    ENVD_KCORE_PATH: join(dir, "no-kcore"),
    ENVD_DROP_CACHES_PATH: paths.dropCaches,
    ENVD_FSTRIM_COMMAND: paths.fstrim,
  };
  const cleanup = () => {
    for (let i = 0; i < 3; i++) {
      try {
        execFileSync("umount", [paths.mnt], { stdio: "ignore" });
      } catch {
        break;
      }
    }
    execFileSync("losetup", ["-d", paths.loop]);
    rmSync(dir, { recursive: true, force: true });
  };
  return { paths, env, cleanup };
}

const isMounted = (path: string) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === path);

for (const runtime of RUNTIMES) {
  describe(`the Wrenn host, today, against the Wrenn flavor [${runtime}]`, { skip }, () => {
    let machine: ReturnType<typeof fakeMachine>;
    let envd: Awaited<ReturnType<typeof startDaemon>>;
    let host: WrennHost;
    let listener: net.Server;
    let listenerPort = 0;
    const report: Record<string, number | string> = {};

    before(async () => {
      machine = fakeMachine(`PLAY${runtime.toUpperCase()}1`);
      // A program in the sandbox listening on loopback, for `envd ports`.
      listener = net.createServer((s) => s.destroy());
      await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
      listenerPort = (listener.address() as net.AddressInfo).port;
      envd = await startDaemon({ runtime, args: ["-flavor", "wrenn"], env: machine.env });
      host = new WrennHost(envd.url);
    });

    after(async () => {
      listener?.close();
      await envd?.[Symbol.asyncDispose]();
      machine?.cleanup();
    });

    test("the whole play: boot, pause, resume, exactly the host's calls in its order", async (t) => {
      const { paths } = machine;
      // ---- boot
      report.healthPolls = await host.waitUntilReady();
      assert.equal(await host.fetchVersion(), ENVD_VERSION);
      const boot = await host.postInitWithDefaults({
        envVars: { HOST_VAR: "from-the-host" },
        sandboxId: "sb-play1",
        templateId: "tpl-base",
        proxyDomain: "play.wrenn.test",
      });
      assert.ok(existsSync(join(paths.runDir, ".WRENN_SANDBOX")), "the daemon wrote its marker at start");
      assert.equal(readFileSync(join(paths.runDir, ".WRENN_SANDBOX_ID"), "utf8"), "sb-play1");
      assert.equal(readFileSync(join(paths.runDir, ".WRENN_TEMPLATE_ID"), "utf8"), "tpl-base");
      assert.equal(readFileSync(join(paths.runDir, ".WRENN_PROXY_DOMAIN"), "utf8"), "play.wrenn.test");

      await host.mountVolume(`PLAY${runtime.toUpperCase()}1`, paths.mnt);
      assert.ok(isMounted(paths.mnt), "the volume is mounted");

      const content = `written by the host through PUT, ${runtime}\n`;
      const written = await host.writeFile(`${paths.mnt}/hello.txt`, content);
      assert.deepEqual(written, [{ path: `${paths.mnt}/hello.txt`, name: "hello.txt", type: "file" }]);
      assert.equal((await host.readFile(`${paths.mnt}/hello.txt`)).toString(), content);
      assert.equal((await host.readFile(`${paths.mnt}/hello.txt`, { username: "root" })).toString(), content);

      const r = await host.exec("/bin/sh", ["-c", 'echo "$WRENN_SANDBOX_ID $WRENN_TEMPLATE_ID $WRENN_PROXY_DOMAIN $HOST_VAR $X"; pwd; cat hello.txt; echo err >&2; exit 3'], {
        envs: { X: "exec-env" },
        cwd: paths.mnt,
      });
      assert.equal(r.stdout, `sb-play1 tpl-base play.wrenn.test from-the-host exec-env\n${paths.mnt}\n${content}`);
      assert.equal(r.stderr, "err\n");
      assert.equal(r.exitCode, 3);
      assert.equal(r.error, "exit status 3");
      assert.ok(r.pid > 0);

      const activity = await host.fetchActivity();
      assert.equal(activity.cacheControl, "no-store");
      assert.equal(activity.cpu_count, cpus().length);
      for (const k of ["cpu_used_pct", "net_bps", "disk_bps"] as const) {
        assert.ok(typeof activity[k] === "number" && activity[k] >= 0, `${k} = ${activity[k]}`);
      }
      assert.ok(Number.isInteger(activity.net_bps) && Number.isInteger(activity.disk_bps));

      // ---- pause
      const started = await host.startMemoryPreload();
      assert.ok(started.state === "running" || started.state === "done", JSON.stringify(started));
      const { status } = await host.waitMemoryPreload({ intervalMs: 1_000 });
      assert.deepEqual({ ...status, elapsed_sec: 0 }, {
        state: "done",
        regions: 1,
        pages: 0x20000 / 4096,
        bytes: 0x20000,
        elapsed_sec: 0,
        source: "/dev/mem",
        error: null,
      });
      writeFileSync(paths.dropCaches, "");
      report.prepareMs = Math.round(await host.prepareSnapshot());
      assert.equal(readFileSync(paths.dropCaches, "utf8"), "1", "prepare dropped the page cache without ?reclaim=1");
      assert.equal(readFileSync(paths.fstrimLog, "utf8"), "trimmed\n", "prepare ran fstrim once");

      // ---- resume (the same process: no real pause here; the VM test does the real one)
      const resume = await host.postInitWithDefaults({ sandboxId: "sb-play1", templateId: "tpl-base", proxyDomain: "play.wrenn.test" });
      assert.notEqual(resume.lifecycleId, boot.lifecycleId);
      const ready = await host.waitUntilRpcReady();
      report.rpcReadyAttempts = ready.attempts;
      assert.ok(Array.isArray(ready.processes));

      // The calls, in order (the health poll counted once per attempt).
      const polls = Array.from({ length: Number(report.healthPolls) }, () => "GET /health");
      const preloadGets = host.calls.filter((c) => c === "GET /memory/preload").length;
      assert.ok(preloadGets >= 1);
      assert.deepEqual(host.calls, [
        ...polls,
        "GET /health",
        "POST /init",
        "POST /volumes/mount",
        "PUT /files",
        "GET /files",
        "GET /files",
        "POST /process.Process/Start",
        "GET /activity",
        "POST /memory/preload",
        ...Array.from({ length: preloadGets }, () => "GET /memory/preload"),
        "POST /snapshot/prepare",
        "POST /init",
        ...Array.from({ length: ready.attempts }, () => "POST /process.Process/List"),
      ]);
      t.diagnostic(`health polls ${report.healthPolls}, prepare ${report.prepareMs} ms, Process/List attempts ${report.rpcReadyAttempts}`);
    });

    test("after the resume: a new lifecycle reset the preloader; the volume and identity are still there", async () => {
      const { paths } = machine;
      assert.equal((await host.getMemoryPreloadStatus()).state, "idle");
      assert.ok(isMounted(paths.mnt));
      assert.equal((await host.readFile(`${paths.mnt}/hello.txt`)).toString(), `written by the host through PUT, ${runtime}\n`);
      const envs = (await (await envd.fetch("/envs")).json()) as Record<string, string>;
      assert.equal(envs.WRENN_SANDBOX_ID, "sb-play1");
      assert.equal(envs.WRENN_TEMPLATE_ID, "tpl-base");
      assert.equal(envs.WRENN_PROXY_DOMAIN, "play.wrenn.test");
    });

    test("envd ports, run in the sandbox, lists the loopback listener with its URL", async () => {
      const bin = join(ROOT, "node_modules", ".bin", runtime);
      const r = await host.exec(bin, [join(ROOT, "src", "main.ts"), "ports", "--json"], { envs: { ENVD_RUN_DIR: machine.paths.runDir } });
      assert.equal(r.exitCode, 0, r.stderr);
      const entries = JSON.parse(r.stdout) as { port: number; url: string }[];
      assert.deepEqual(
        entries.find((e) => e.port === listenerPort),
        { port: listenerPort, url: `https://${listenerPort}-sb-play1.play.wrenn.test` },
      );
      assert.ok(!entries.some((e) => e.port === 49983), "envd's own port is left out");
    });

    test("the host's unmount before a destroy: sync + umount, 204, twice", async () => {
      await host.unmountVolume(machine.paths.mnt);
      assert.ok(!isMounted(machine.paths.mnt));
      await host.unmountVolume(machine.paths.mnt);
    });

    test("bad input to each new route: a clear status and {code,message}, the daemon unharmed", async () => {
      const json = async (res: Response) => ({ status: res.status, body: (await res.json()) as { code: number; message: string } });
      const post = (path: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }) =>
        envd.fetch(path, { method: "POST", headers, body });

      // PUT /files
      assert.deepEqual(await json(await envd.fetch("/files", { method: "PUT", body: "x", headers: { "content-type": "application/octet-stream" } })), {
        status: 400,
        body: { code: 400, message: "path query parameter is required for raw body upload" },
      });
      const toDir = await json(await envd.fetch(`/files?path=${encodeURIComponent(machine.paths.dir)}`, { method: "PUT", body: "x" }));
      assert.equal(toDir.status, 400);
      assert.match(toDir.body.message, /directory/);
      const gz = await envd.fetch(`/files?path=${encodeURIComponent(join(machine.paths.dir, "gz.txt"))}`, {
        method: "PUT",
        body: gzipSync("zipped\n"),
        headers: { "content-encoding": "gzip" },
      });
      assert.equal(gz.status, 200, await gz.clone().text());
      assert.equal(readFileSync(join(machine.paths.dir, "gz.txt"), "utf8"), "zipped\n");
      const badUser = await json(await envd.fetch(`/files?path=/tmp/x&username=no-such-user-here`, { method: "PUT", body: "x" }));
      assert.equal(badUser.status, 401);

      // /volumes
      const badJson = await json(await post("/volumes/mount", "{nope"));
      assert.equal(badJson.status, 400);
      assert.match(badJson.body.message, /^invalid JSON body: /);
      assert.deepEqual(await json(await post("/volumes/mount", '{"serial":"a-b","mount_path":"/mnt/x"}')), { status: 400, body: { code: 400, message: "invalid volume serial" } });
      assert.deepEqual(await json(await post("/volumes/mount", '{"serial":"ab"}')), { status: 400, body: { code: 400, message: "mount_path is required" } });
      assert.deepEqual(await json(await post("/volumes/mount", '{"serial":"NOSUCHDISK","mount_path":"/mnt/x"}')), {
        status: 404,
        body: { code: 404, message: "no block device with serial NOSUCHDISK" },
      });
      assert.deepEqual(await json(await post("/volumes/unmount", "{}")), { status: 400, body: { code: 400, message: "mount_path is required" } });
      assert.deepEqual(await json(await post("/volumes/unmount", '{"mount_path":"rel/dir"}')), {
        status: 400,
        body: { code: 400, message: "mount_path must be an absolute path: 'rel/dir'" },
      });
      assert.equal((await post("/volumes/unmount", JSON.stringify({ mount_path: join(machine.paths.dir, "never-mounted") }))).status, 204);
      assert.equal((await json(await envd.fetch("/volumes/mount"))).status, 405);

      // /memory/preload, /activity
      assert.equal((await json(await envd.fetch("/memory/preload", { method: "DELETE" }))).status, 405);
      assert.equal((await json(await envd.fetch("/memory/preload/cancel"))).status, 405);
      assert.equal((await post("/memory/preload/cancel", "")).status, 204);
      assert.equal((await json(await envd.fetch("/activity", { method: "POST" }))).status, 405);

      // /init in Wrenn's spelling: bad input is a 400 and changes nothing.
      const before = (await (await envd.fetch("/envs")).json()) as Record<string, string>;
      for (const [body, message] of [
        ['{"sandbox_id":"a/b"}', /sandbox_id is not a valid id/],
        ['{"lifecycle_id":5}', /lifecycle_id must be a string/],
        ['{"proxy_domain":"bad domain"}', /proxy_domain is not a host name/],
        ['{"timestamp":"soon","sandbox_id":"sb-2"}', /timestamp is not a valid RFC 3339 time/],
        ['{"access_token":"a","accessToken":"b"}', /both given/],
      ] as const) {
        const res = await json(await post("/init", body));
        assert.equal(res.status, 400, body);
        assert.match(res.body.message, message);
      }
      assert.deepEqual(await (await envd.fetch("/envs")).json(), before);
      assert.equal(readFileSync(join(machine.paths.runDir, ".WRENN_SANDBOX_ID"), "utf8"), "sb-play1");

      // Still serving.
      assert.equal((await envd.fetch("/health")).status, 200);
    });
  });
}

/** Log lines with this message, among the first `upTo` lines (all by default). */
const logsWith = (logs: Record<string, unknown>[], msg: string, upTo = logs.length) => logs.slice(0, upTo).filter((l) => l.msg === msg);

for (const runtime of RUNTIMES) {
  describe(`a new lifecycle_id, as the host sends on boot and on every resume [${runtime}]`, () => {
    test("restarts port forwarding, steps the clock and runs `chronyc -a makestep`; the same id again does none of it", async () => {
      const dir = tempDir("lifecycle");
      const clock = recorder(dir, "clock");
      const chronyc = recorder(dir, "chronyc");
      await using envd = await startDaemon({
        runtime,
        args: ["-flavor", "wrenn"],
        env: { ENVD_RUN_DIR: join(dir, "run"), ENVD_CLOCK_COMMAND: clock.path, ENVD_CHRONYC_COMMAND: chronyc.path },
      });
      const init = async (body: Record<string, unknown>) => {
        const res = await envd.fetch("/init", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        assert.equal(res.status, 204, await res.text());
      };
      // Every child the daemon spawned is gone (reaped): a chronyc spawned by an /init would
      // still be one, or would have written its line already.
      const noChildren = () => eventually(() => descendantsOf(envd.pid).length === 0, "the daemon's children to be gone");
      const applied = () => logsWith(envd.logs, "init applied").length;
      const started = await eventually(() => logsWith(envd.logs, "port forwarding started").length, "forwarding started at boot");

      // Boot: a new id; the host's time an hour ahead of ours (the recorder never sets the clock).
      const hostMs = Date.now() + 3_600_000;
      await init({ timestamp: new Date(hostMs).toISOString(), lifecycle_id: "life-1" });
      // The step is awaited before the 204: the clock program has run once, with the host's time.
      assert.equal(clock.calls().length, 1);
      const stepped = Number((clock.calls()[0] as string).replace(/^@/, ""));
      assert.ok(stepped >= hostMs / 1000, `clock set to ${clock.calls()[0]}, the host said ${hostMs / 1000}`);
      await eventually(() => chronyc.calls().length === 1, "chronyc");
      assert.deepEqual(chronyc.calls(), ["-a makestep"]);
      await eventually(() => logsWith(envd.logs, "port forwarding started").length === started + 1, "forwarding restarted");
      await noChildren();

      // The same id again (with the same time: not stale): an ordinary /init.
      await eventually(() => applied() === 1, "the first init's log");
      await init({ timestamp: new Date(hostMs).toISOString(), lifecycle_id: "life-1" });
      assert.deepEqual(descendantsOf(envd.pid), [], "no chronyc was spawned (it would be spawned before the answer)");
      assert.equal(chronyc.calls().length, 1, "no chronyc for a repeated lifecycle_id");
      // The daemon logs a restart before it logs "init applied": up to that line, none.
      const secondApplied = await eventually(() => (applied() === 2 ? envd.logs.findLastIndex((l) => l.msg === "init applied") + 1 : 0), "the second init's log");
      assert.equal(logsWith(envd.logs, "port forwarding started", secondApplied).length, started + 1, "no forwarding restart for a repeated lifecycle_id");
      assert.equal(logsWith(envd.logs, "new lifecycle", secondApplied).length, 1);
      // The clock is still an hour behind the host's (the recorder does not set it), so the
      // ordinary rule (> 50 ms behind) sets it, as for any /init; that is not a lifecycle step.
      assert.equal(clock.calls().length, 2);

      // Resume: a new id steps, restarts and runs chronyc again, once each.
      await init({ timestamp: new Date(hostMs + 1_000).toISOString(), lifecycle_id: "life-2" });
      assert.equal(clock.calls().length, 3);
      await eventually(() => chronyc.calls().length === 2, "chronyc after the resume");
      await eventually(() => logsWith(envd.logs, "port forwarding started").length === started + 2, "forwarding restarted after the resume");
      await noChildren();
      assert.equal(chronyc.calls().length, 2);
    });
  });
}

for (const runtime of RUNTIMES) {
  describe(`the host's process calls beyond Exec, binary codec as connect-go sends them [${runtime}]`, () => {
    test("StartBackground + ConnectProcess + KillProcess; PtyStart, PtyConnect, PtySendInput, PtyResize, PtyKill", async () => {
      const dir = tempDir("host-process");
      await using envd = await startDaemon({ runtime, args: ["-flavor", "wrenn"], env: { ENVD_RUN_DIR: join(dir, "run") } });
      const host = new WrennHost(envd.url);

      // StartBackground (tag, stdin false; the host closes the stream at the start event), then
      // ConnectProcess by pid: the output so far is replayed, then live; KillProcess by tag ends it.
      const pid = await host.startBackground("bg-play", "/bin/sh", ["-c", "echo started; exec sleep 600"]);
      assert.ok(pid > 0);
      const bg = host.connectProcess({ pid });
      await bg.waitFor((s) => s.text("stdout") === "started\n", "the background output");
      assert.equal(bg.events[0]?.type, "start");
      assert.equal(bg.events[0]?.pid, pid);
      const byTag = host.connectProcess({ tag: "bg-play" });
      await byTag.waitFor((s) => s.events.some((e) => e.type === "start" && e.pid === pid), "the start event by tag");
      await host.killProcess({ tag: "bg-play" }, 15);
      for (const s of [bg, byTag]) {
        await s.waitFor((x) => x.events.some((e) => e.type === "end"), "the end event");
        await s.ended;
        assert.deepEqual(s.events.at(-1), { type: "end", exitCode: -1, error: "signal: terminated" });
      }

      // PtyStart (80 × 24, tag, stdin true); PtyConnect by tag sees the same terminal.
      const script = 'stty size; while IFS= read -r l; do echo "got:$l"; stty size; done';
      const pty = host.ptyStart("pty-play", "/bin/sh", ["-c", script], 80, 24);
      await pty.waitFor((s) => s.text("pty").includes("24 80"), "the first size");
      const ptyPid = pty.events[0]?.pid as number;
      assert.equal(pty.events[0]?.type, "start");
      const attached = host.ptyConnect("pty-play");
      await attached.waitFor((s) => s.events.some((e) => e.type === "start" && e.pid === ptyPid), "PtyConnect's start");
      await host.ptySendInput("pty-play", "hello\n");
      for (const s of [pty, attached]) await s.waitFor((x) => x.text("pty").includes("got:hello"), "the echoed input");
      await host.ptyResize("pty-play", 100, 30);
      await host.ptySendInput("pty-play", "again\n");
      for (const s of [pty, attached]) await s.waitFor((x) => /got:again\r?\n30 100/.test(x.text("pty")), "the new size");
      assert.ok(!pty.events.some((e) => e.type === "stdout" || e.type === "stderr"), "a PTY's output comes as pty data");
      await host.ptyKill("pty-play");
      for (const s of [pty, attached]) {
        await s.waitFor((x) => x.events.some((e) => e.type === "end"), "the PTY's end");
        await s.ended;
        assert.deepEqual(s.events.at(-1), { type: "end", exitCode: -1, error: "signal: killed" });
      }

      assert.deepEqual(host.calls, [
        "POST /process.Process/Start",
        "POST /process.Process/Connect",
        "POST /process.Process/Connect",
        "POST /process.Process/SendSignal",
        "POST /process.Process/Start",
        "POST /process.Process/Connect",
        "POST /process.Process/SendInput",
        "POST /process.Process/Update",
        "POST /process.Process/SendInput",
        "POST /process.Process/SendSignal",
      ]);
    });
  });
}
