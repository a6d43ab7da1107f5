import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { groupSettings, memTotalFromMeminfo, selfCgroupDir, workloadMemoryBytes } from "./cgroup-layout.ts";
import { createCgroups } from "./cgroups.ts";

const MIB = 1024 * 1024;
const log = createLogger("error", () => {});
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * A directory that looks like a cgroup v2 root offering cpu, io and memory. Real cgroupfs has a
 * controller's files only where it is enabled; here they are pre-created for the groups in `withFiles`.
 */
function fakeRoot(withFiles: string[]): string {
  const root = mkdtempSync(join(tmpdir(), "envd-cg-"));
  dirs.push(root);
  writeFileSync(join(root, "cgroup.controllers"), "cpuset cpu io memory pids\n");
  writeFileSync(join(root, "cgroup.subtree_control"), "");
  for (const g of withFiles) {
    mkdirSync(join(root, g));
    for (const f of ["cpu.weight", "io.weight", "memory.high", "memory.max", "memory.min", "memory.low", "cgroup.freeze"]) {
      writeFileSync(join(root, g, f), "");
    }
    writeFileSync(join(root, g, "cgroup.events"), "populated 1\nfrozen 0\n");
  }
  return root;
}

describe("cgroup settings", () => {
  test("workload memory: MemTotal − min(MemTotal/8, 128 MiB)", () => {
    assert.equal(workloadMemoryBytes(512 * MIB), 448 * MIB);
    assert.equal(workloadMemoryBytes(1024 * MIB), 896 * MIB);
    assert.equal(workloadMemoryBytes(2048 * MIB), 1920 * MIB);
    assert.equal(workloadMemoryBytes(16384 * MIB), 16256 * MIB);
    assert.equal(workloadMemoryBytes(0), 0);
  });

  test("groups and values of docs/protocol.md §7.3", () => {
    const s = groupSettings(1024 * MIB);
    const m = String(896 * MIB);
    assert.deepEqual(s.pty, [
      ["cpu.weight", "200"],
      ["io.weight", "default 50"],
      ["memory.high", m],
      ["memory.max", m],
    ]);
    assert.deepEqual(s.user, [
      ["cpu.weight", "50"],
      ["io.weight", "default 10"],
      ["memory.high", m],
      ["memory.max", m],
    ]);
    assert.deepEqual(s.socat, [
      ["cpu.weight", "150"],
      ["io.weight", "default 50"],
      ["memory.min", String(5 * MIB)],
      ["memory.low", String(8 * MIB)],
    ]);
  });

  test("MemTotal from /proc/meminfo", () => {
    assert.equal(memTotalFromMeminfo("MemTotal:        2048000 kB\nMemFree: 1 kB\n"), 2048000 * 1024);
    assert.equal(memTotalFromMeminfo("nothing"), 0);
  });

  test("the daemon's own cgroup directory from mountinfo and /proc/self/cgroup", () => {
    const mountinfo =
      "24 1 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw\n35 24 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n";
    assert.equal(selfCgroupDir(mountinfo, "1:cpu:/\n0::/system.slice/envd.service\n"), "/sys/fs/cgroup/unified/system.slice/envd.service");
    assert.equal(selfCgroupDir(mountinfo, "0::/\n"), "/sys/fs/cgroup/unified");
    assert.equal(selfCgroupDir("24 1 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", "0::/\n"), undefined);
    assert.equal(selfCgroupDir(mountinfo, "1:cpu:/\n"), undefined);
  });
});

describe("createCgroups", () => {
  test("no cgroup.controllers at the root, or -no-cgroups: the no-op manager", async () => {
    const plain = mkdtempSync(join(tmpdir(), "envd-cg-"));
    dirs.push(plain);
    for (const cg of [createCgroups({ root: plain, disabled: false, log }), createCgroups({ root: fakeRoot([]), disabled: true, log })]) {
      assert.equal(cg.enabled, false);
      assert.equal(cg.procsPath("user"), undefined);
      assert.equal(cg.procsPath("pty"), undefined);
    }
  });

  test("creates the three groups, enables controllers, writes the settings where the controller exists", async () => {
    const root = fakeRoot(["user", "ptys"]);
    const cg = createCgroups({ root, disabled: false, log, memTotalBytes: 1024 * MIB });
    assert.equal(cg.enabled, true);
    assert.equal(cg.procsPath("user"), join(root, "user", "cgroup.procs"));
    assert.equal(cg.procsPath("pty"), join(root, "ptys", "cgroup.procs"));
    assert.equal(readFileSync(join(root, "user", "cpu.weight"), "utf8"), "50");
    assert.equal(readFileSync(join(root, "user", "io.weight"), "utf8"), "default 10");
    assert.equal(readFileSync(join(root, "user", "memory.max"), "utf8"), String(896 * MIB));
    assert.equal(readFileSync(join(root, "ptys", "cpu.weight"), "utf8"), "200");
    assert.equal(readFileSync(join(root, "ptys", "memory.high"), "utf8"), String(896 * MIB));
    // socats exists, but without its controllers' files nothing was written there.
    assert.equal(cg.groupDir("socat"), join(root, "socats"));
    assert.equal(readFileSync(join(root, "user", "cgroup.freeze"), "utf8"), "0", "a stale freeze is cleared at start");
  });

  test("a setup that fails half-way leaves the no-op manager", async () => {
    const broken = fakeRoot([]);
    writeFileSync(join(broken, "ptys"), "a file where a group must go");
    const warnings: string[] = [];
    const noop = createCgroups({
      root: broken,
      disabled: false,
      log: createLogger("warn", (line) => warnings.push(line)),
      memTotalBytes: 1024 * MIB,
    });
    assert.equal(noop.enabled, false);
    assert.equal(noop.procsPath("pty"), undefined);
    assert.ok(warnings.some((w) => w.includes("cgroup setup failed")), warnings.join("\n"));
  });

  test("freeze writes cgroup.freeze, reports what the kernel says, refuses new children; thaw undoes it", async () => {
    const root = fakeRoot(["user", "ptys"]);
    const cg = createCgroups({ root, disabled: false, log, memTotalBytes: 1024 * MIB });
    writeFileSync(join(root, "user", "cgroup.events"), "populated 1\nfrozen 1\n"); // the kernel says frozen
    const r = await cg.freeze({ mode: "legacy", maxWaitMs: 20, maxCgroups: 512 });
    assert.equal(readFileSync(join(root, "user", "cgroup.freeze"), "utf8"), "1");
    assert.equal(readFileSync(join(root, "ptys", "cgroup.freeze"), "utf8"), "1");
    assert.equal(r.mode, "legacy");
    assert.equal(r.visited, 2);
    assert.equal(r.requested, 2);
    assert.equal(r.preFrozen, 1);
    assert.equal(r.frozen, 1);
    assert.equal(r.notFrozen, 1, "ptys never reported frozen within 20 ms");
    assert.equal(r.failed, 0);
    assert.ok(r.waitMs >= 0);
    assert.equal(cg.frozen, true);
    assert.throws(() => cg.procsPath("user"), /frozen for a snapshot/);
    const t = cg.thaw();
    assert.deepEqual(t, { thawed: 2, failed: 0 });
    assert.equal(readFileSync(join(root, "user", "cgroup.freeze"), "utf8"), "0");
    assert.equal(cg.frozen, false);
    assert.equal(cg.procsPath("user"), join(root, "user", "cgroup.procs"));
  });

  test("hierarchy mode freezes every top-most group that does not hold the daemon, up to maxCgroups", async () => {
    const root = fakeRoot(["user", "ptys", "other"]);
    mkdirSync(join(root, "system"));
    mkdirSync(join(root, "system", "envd"));
    mkdirSync(join(root, "system", "sshd"));
    const cg = createCgroups({ root, disabled: false, log, memTotalBytes: 1024 * MIB, selfDir: join(root, "system", "envd") });
    const r = await cg.freeze({ mode: "hierarchy", maxWaitMs: 0, maxCgroups: 512 });
    assert.equal(r.mode, "hierarchy");
    assert.equal(readFileSync(join(root, "other", "cgroup.freeze"), "utf8"), "1");
    assert.equal(readFileSync(join(root, "system", "sshd", "cgroup.freeze"), "utf8"), "1");
    assert.throws(() => readFileSync(join(root, "system", "envd", "cgroup.freeze"), "utf8"), "the daemon's own group is never frozen");
    assert.throws(() => readFileSync(join(root, "system", "cgroup.freeze"), "utf8"), "nor its ancestors");
    // visited: other, ptys, socats, system, user, then envd and sshd inside system
    assert.equal(r.visited, 7);
    assert.equal(r.allowlisted, 3, "socats, system, system/envd");
    assert.equal(r.truncated, false);
    cg.thaw();
    assert.equal(readFileSync(join(root, "system", "sshd", "cgroup.freeze"), "utf8"), "0");
    const capped = await cg.freeze({ mode: "hierarchy", maxWaitMs: 0, maxCgroups: 2 });
    assert.equal(capped.truncated, true);
    assert.equal(capped.visited, 2);
    cg.thaw();
  });
});
