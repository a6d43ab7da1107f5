/**
 * envd the way Wrenn runs it, in a QEMU microVM: the image test/vm/image.sh builds, booted with
 * envd itself as PID 1 (its own reaping init), in the Wrenn flavor (`envd.flavor=wrenn`), with a
 * blank raw disk attached as a virtio-blk device with a serial. The Wrenn host's calls
 * (test/e2e/wrenn-host.ts) against the compiled binary, in the host's order:
 *
 *   boot:    health poll, /init snake_case, volumes mount, PUT/GET /files, Exec (binary codec),
 *            activity
 *   pause:   memory preload wait, /snapshot/prepare (timed) — then QEMU saves the whole machine
 *   restore: a fresh QEMU loads it; /init with a new lifecycle id, Process/List until it answers;
 *            then the restore helper's memory loader: POST /memory/preload and wait — the real
 *            walk of the guest's RAM (a small guest, so it is quick even under TCG)
 *
 * and after it: the volume and its file survived; PID 1 is envd, orphans are reaped, a dead
 * daemon is started again; unmount flushes the files into the disk image (read back on the host
 * with debugfs). `envd ports` answers from the binary in between.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sandbox } from "e2b";
import { eventually, isRoot } from "../e2e/harness.ts";
import { WrennHost } from "../e2e/wrenn-host.ts";
import { freePort, INITRD, KERNEL, Vm, type VmSpec, WORK } from "./qemu.ts";

const ENVD_VERSION = "0.6.4";
const SERIAL = "WRENNVOL1";
const MNT = "/mnt/vol-1";
/** Small, so the memory walk is quick under TCG; the 120 MiB initramfs must still unpack. */
const MEM_MIB = 512;

const sdk = (url: string) => Sandbox.create({ debug: true, sandboxUrl: url } as Parameters<typeof Sandbox.create>[0] & object);
const procStat = (field: number) => `awk '{print $${field}}'`;

const has = (cmd: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};
const skip = !isRoot
  ? "needs root"
  : !existsSync(KERNEL) || !existsSync(INITRD)
    ? "no guest image: run test/vm/image.sh (npm run test:vm does)"
    : false;

describe("envd as PID 1 in a QEMU microVM, Wrenn's way: its own init, the Wrenn flavor, the Wrenn host's calls (virtio-blk volume, snapshot and restore)", { skip }, () => {
  const disk = join(WORK, "wrenn-vol.img");
  let spec: VmSpec;
  let vm: Vm;
  let host: WrennHost;
  const timings: Record<string, number | string> = {};
  const content = "written by the Wrenn host through PUT /files\n";

  before(async () => {
    rmSync(disk, { force: true });
    writeFileSync(disk, "");
    execFileSync("truncate", ["-s", "256M", disk]);
    spec = {
      name: "envd-wrenn",
      port: await freePort(),
      memMiB: MEM_MIB,
      init: "/usr/lib/envd/envd-init",
      append: ["envd.flavor=wrenn"],
      disks: [{ file: disk, serial: SERIAL }],
    };
    vm = await Vm.boot(spec);
    host = new WrennHost(vm.url);
  });

  after(async () => {
    await vm?.kill();
    rmSync(disk, { force: true });
    appendFileSync(join(WORK, "timings.jsonl"), `${JSON.stringify({ wrenn: timings, at: new Date().toISOString() })}\n`);
  });

  test("boot: health poll, /init in snake_case, volume mount, PUT/GET files, Exec, activity", async (t) => {
    const t0 = performance.now();
    timings.healthPolls = await Promise.race([host.waitUntilReady(180_000), vm.failOnExit()]);
    timings.bootToReadyMs = Math.round(performance.now() - vm.startedAt);
    assert.equal(await host.fetchVersion(), ENVD_VERSION);
    await host.postInitWithDefaults({ sandboxId: "sb-vm1", templateId: "tpl-vm", proxyDomain: "vm.wrenn.test", envVars: { FROM_HOST: "1" } });
    const m0 = performance.now();
    await host.mountVolume(SERIAL, MNT);
    timings.mountWithMkfsMs = Math.round(performance.now() - m0);
    assert.deepEqual(await host.writeFile(`${MNT}/hello.txt`, content), [{ path: `${MNT}/hello.txt`, name: "hello.txt", type: "file" }]);
    assert.equal((await host.readFile(`${MNT}/hello.txt`)).toString(), content);
    const r = await host.exec("/bin/sh", ["-c", `grep ' ${MNT} ' /proc/mounts | cut -d' ' -f1,3; stat -c %a ${MNT}; echo $(cat /sys/block/vda/serial); echo $WRENN_SANDBOX_ID $WRENN_PROXY_DOMAIN $FROM_HOST; cat /run/wrenn/.WRENN_SANDBOX_ID`], {
      cwd: MNT,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, `/dev/vda ext4\n1777\n${SERIAL}\nsb-vm1 vm.wrenn.test 1\nsb-vm1`);
    const activity = await host.fetchActivity();
    assert.equal(activity.cpu_count, 1);
    assert.equal(activity.cacheControl, "no-store");
    t.diagnostic(`boot to the first 200 /health ${timings.bootToReadyMs} ms (${timings.healthPolls} polls); mount with mkfs ${timings.mountWithMkfsMs} ms; boot play ${Math.round(performance.now() - t0)} ms`);
  });

  test("envd ports: the compiled binary answers as a one-shot command, well before a daemon could start", async (t) => {
    const r = await host.exec("/bin/bash", [
      "-c",
      "busybox nc -ll -p 8080 -e /bin/true >/dev/null 2>&1 </dev/null & l=$!; " +
        "for i in $(seq 100); do grep -q ':1F90 [0:]*0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null && break; sleep 0.1; done; " +
        "s=$EPOCHREALTIME; /usr/bin/envd ports --json; e=$EPOCHREALTIME; /usr/bin/envd ports; kill $l; echo ports-ms $(( (${e/./} - ${s/./}) / 1000 ))",
    ]);
    assert.equal(r.exitCode, 0, r.stderr);
    const json = r.stdout.slice(0, r.stdout.indexOf("]") + 1);
    assert.deepEqual(JSON.parse(json), [{ port: 8080, url: "https://8080-sb-vm1.vm.wrenn.test" }]);
    assert.match(r.stdout, /PORT {3}URL\n8080 {3}https:\/\/8080-sb-vm1\.vm\.wrenn\.test\n/);
    timings.portsCommandMs = Number(/ports-ms (\d+)/.exec(r.stdout)?.[1]);
    // The daemon's start in the same guest, for comparison: kill it and time the respawn.
    t.diagnostic(`envd ports took ${timings.portsCommandMs} ms in the guest (the daemon took ${timings.bootToReadyMs} ms from QEMU start to its first answer)`);
  });

  test("envd ports refuses outside a sandbox (no marker, no WRENN_SANDBOX=true)", async () => {
    const r = await host.exec("/bin/sh", ["-c", "ENVD_RUN_DIR=/nonexistent WRENN_SANDBOX= /usr/bin/envd ports; echo exit=$?"]);
    assert.equal(r.stdout, "exit=1\n");
    assert.equal(r.stderr, "envd ports: not running inside a wrenn sandbox\n");
  });

  describe("pause (memory preload wait, prepare), snapshot, restore into a fresh QEMU, resume", () => {
    before(async () => {
      // Pause: the host first waits for a memory loader (none ran since boot: idle), then prepares.
      const wait = await host.waitMemoryPreload();
      assert.equal(wait.status.state, "idle");
      timings.prepareMs = Math.round(await host.prepareSnapshot());
      const saved = await vm.snapshot(join(WORK, "envd-wrenn.state"));
      timings.snapshotSaveMs = Math.round(saved.saveMs);
      timings.snapshotMiB = Math.round(saved.bytes / 1048576);
      const restored = await Vm.restore(spec, saved.file);
      vm = restored.vm;
      rmSync(saved.file, { force: true });
      timings.restoreLoadMs = Math.round(restored.loadMs);
      // Resume: /init with a new lifecycle id, then Process/List until it answers.
      await host.postInitWithDefaults({ sandboxId: "sb-vm1", templateId: "tpl-vm", proxyDomain: "vm.wrenn.test" });
      const ready = await host.waitUntilRpcReady(60_000);
      timings.rpcReadyAttempts = ready.attempts;
    });

    test("prepare answered 204 within the host's 5 s (measured)", (t) => {
      t.diagnostic(
        `prepare ${timings.prepareMs} ms (page cache dropped, fstrim, sync); snapshot ${timings.snapshotMiB} MiB saved in ${timings.snapshotSaveMs} ms, loaded in ${timings.restoreLoadMs} ms; Process/List ready after ${timings.rpcReadyAttempts} attempt(s)`,
      );
      assert.ok(Number(timings.prepareMs) > 0);
    });

    test("the restore helper's memory loader walks the guest's RAM for real", async (t) => {
      const started = await host.startMemoryPreload();
      assert.ok(started.state === "running" || started.state === "done", JSON.stringify(started));
      const { status, polls } = await host.waitMemoryPreload({ timeoutMs: 240_000 });
      assert.equal(status.state, "done", JSON.stringify(status));
      assert.equal(status.error, null);
      // Debian's kernel refuses /dev/mem above 1 MiB (STRICT_DEVMEM): the kcore fallback does it.
      assert.ok(status.source === "/proc/kcore" || status.source === "/dev/mem", status.source);
      assert.ok(status.regions >= 1);
      // Every page of RAM the guest has, less what the firmware keeps (a few MiB).
      const ramPages = (MEM_MIB * 1048576) / 4096;
      assert.ok(status.pages <= ramPages && status.pages > ramPages * 0.95, `${status.pages} of ${ramPages} pages`);
      assert.equal(status.bytes, status.pages * 4096);
      timings.preloadSec = status.elapsed_sec;
      timings.preloadSource = status.source;
      // Idempotent once done.
      assert.equal((await host.startMemoryPreload()).state, "done");
      t.diagnostic(`walked ${status.pages} pages in ${status.regions} regions via ${status.source} in ${status.elapsed_sec.toFixed(2)} s (${polls} polls)`);
    });

    test("the volume, its file and the identity came through the snapshot", async () => {
      assert.equal((await host.readFile(`${MNT}/hello.txt`)).toString(), content);
      const r = await host.exec("/bin/sh", ["-c", `grep -c ' ${MNT} ' /proc/mounts; echo $WRENN_SANDBOX_ID`]);
      assert.equal(r.stdout, "1\nsb-vm1\n");
    });

    test("PID 1 is envd, and the daemon serving us is its child", async () => {
      const r = await host.exec("/bin/sh", ["-c", `readlink /proc/1/exe; readlink /proc/$PPID/exe; ${procStat(4)} /proc/$PPID/stat`]);
      assert.equal(r.stdout, "/usr/bin/envd\n/usr/bin/envd\n1\n");
    });

    test("orphaned processes are reaped", async () => {
      const sbx = await sdk(vm.url);
      // Each `sleep` outlives its shell, so it is re-parented away from the daemon, and exits later.
      await sbx.commands.run("for i in 1 2 3 4 5; do sh -c 'sleep 0.3 &'; done");
      const zombies = await eventually(
        async () => {
          const z = (await sbx.commands.run("grep -l '^State:.Z' /proc/[0-9]*/status; true")).stdout.trim();
          return z === "" ? "none" : undefined;
        },
        "no zombies",
        30_000,
      );
      assert.equal(zombies, "none");
    });

    test("the daemon is started again when it dies; PID 1 and the VM live on", async () => {
      const sbx = await sdk(vm.url);
      const daemon = (await sbx.commands.run("echo $PPID")).stdout.trim();
      await sbx.commands.run(`(sleep 0.5; kill -KILL ${daemon}) >/dev/null 2>&1 </dev/null &`);
      const t0 = performance.now();
      const next = await eventually(
        async () => {
          const pid = (await sbx.commands.run("echo $PPID", { requestTimeoutMs: 5_000 })).stdout.trim();
          return pid !== daemon ? pid : undefined;
        },
        "a new daemon",
        60_000,
      );
      timings.pid1RestartToReadyMs = Math.round(performance.now() - t0 - 500);
      const r = await sbx.commands.run(`readlink /proc/1/exe; ${procStat(4)} /proc/${next}/stat`);
      assert.equal(r.stdout, "/usr/bin/envd\n1\n");
      // The new daemon is a Wrenn guest too, and the kernel kept the volume mounted.
      assert.equal(await host.fetchVersion(), ENVD_VERSION);
      assert.equal((await host.readFile(`${MNT}/hello.txt`)).toString(), content);
    });

    test("unmount before destroy flushes the file into the disk image (read back on the host)", { skip: has("debugfs") ? false : "no debugfs on the host" }, async () => {
      await host.writeFile(`${MNT}/after-restore.txt`, "written after the restore\n");
      await host.unmountVolume(MNT);
      const r = await host.exec("/bin/sh", ["-c", `grep -c ' ${MNT} ' /proc/mounts; true`]);
      assert.equal(r.stdout, "0\n");
      await vm.kill();
      const read = (name: string) => execFileSync("debugfs", ["-R", `cat /${name}`, disk], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      assert.equal(read("hello.txt"), content);
      assert.equal(read("after-restore.txt"), "written after the restore\n");
    });
  });
});
