/**
 * deploy/install.sh against throwaway root file systems: what it installs for systemd and for
 * busybox init, that it is idempotent and keeps what the image already has, and that it refuses
 * bad input with a message. (The VM test boots an image it built, so this is the part a VM cannot
 * show: the systemd flavour, existing inittabs, errors.)
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ROOT } from "../e2e/harness.ts";

const INSTALL = join(ROOT, "deploy", "install.sh");
const base = mkdtempSync(join(tmpdir(), "envd-install-"));
after(() => rmSync(base, { recursive: true, force: true }));

/** A stand-in for dist/envd: any executable file will do for the installer. */
const fakeBin = join(base, "envd-bin");
writeFileSync(fakeBin, "#!/bin/sh\necho fake envd \"$@\"\n");
chmodSync(fakeBin, 0o755);

let n = 0;
function newRoot(kind: "systemd" | "busybox" | "bare"): string {
  const root = join(base, `root${n++}`);
  mkdirSync(root);
  if (kind === "systemd") {
    mkdirSync(join(root, "lib/systemd"), { recursive: true });
    writeFileSync(join(root, "lib/systemd/systemd"), "");
    chmodSync(join(root, "lib/systemd/systemd"), 0o755);
  }
  if (kind === "busybox") {
    mkdirSync(join(root, "bin"));
    writeFileSync(join(root, "bin/busybox"), "");
    chmodSync(join(root, "bin/busybox"), 0o755);
  }
  return root;
}

function install(...args: string[]) {
  const r = spawnSync("bash", [INSTALL, ...args], { encoding: "utf8" });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const read = (root: string, p: string) => readFileSync(join(root, p), "utf8");
const mode = (root: string, p: string) => statSync(join(root, p)).mode & 0o777;

describe("deploy/install.sh", () => {
  test("systemd image: /usr/bin/envd, the unit enabled in sysinit.target.wants, /etc/default/envd", () => {
    const root = newRoot("systemd");
    const r = install("--root", root, "--bin", fakeBin, "--args", "-isnotfc -flavor wrenn");
    assert.equal(r.code, 0, r.out);
    assert.equal(read(root, "usr/bin/envd"), readFileSync(fakeBin, "utf8"));
    assert.equal(mode(root, "usr/bin/envd"), 0o755);
    const unit = read(root, "etc/systemd/system/envd.service");
    for (const line of [
      "ExecStart=/usr/bin/envd $ENVD_ARGS",
      "Restart=always",
      "OOMScoreAdjust=-1000",
      "DefaultDependencies=no",
      "WantedBy=sysinit.target",
      "Environment=BUN_TMPDIR=/run/envd",
    ]) {
      assert.ok(unit.includes(`\n${line}\n`), `unit lacks ${line}`);
    }
    assert.equal(readlinkSync(join(root, "etc/systemd/system/sysinit.target.wants/envd.service")), "../envd.service");
    assert.match(read(root, "etc/default/envd"), /^ENVD_ARGS="-isnotfc -flavor wrenn"$/m);
    assert.equal(existsSync(join(root, "etc/inittab")), false);
  });

  test("the unit passes systemd-analyze verify", (t) => {
    const probe = spawnSync("systemd-analyze", ["--version"]);
    if (probe.status !== 0) {
      t.skip("systemd-analyze not installed");
      return;
    }
    // The unit as installed, with ExecStart pointing at a binary that exists on this machine.
    const dir = join(base, "verify");
    mkdirSync(dir);
    const unit = readFileSync(join(ROOT, "deploy/envd.service"), "utf8").replace("ExecStart=/usr/bin/envd", `ExecStart=${fakeBin}`);
    writeFileSync(join(dir, "envd.service"), unit);
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", join(dir, "envd.service")], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), "");
  });

  test("image without systemd: busybox init runs our sysinit and respawns envd-run", () => {
    const root = newRoot("busybox");
    const r = install("--root", root, "--bin", fakeBin);
    assert.equal(r.code, 0, r.out);
    const inittab = read(root, "etc/inittab");
    assert.match(inittab, /^::sysinit:\/usr\/lib\/envd\/sysinit$/m);
    assert.match(inittab, /^::respawn:\/usr\/lib\/envd\/envd-run$/m);
    assert.match(inittab, /^::shutdown:\/bin\/busybox umount -a -r$/m);
    assert.equal(readlinkSync(join(root, "usr/lib/envd/init")), "/bin/busybox");
    assert.equal(readlinkSync(join(root, "sbin/init")), "/usr/lib/envd/init");
    for (const f of ["usr/lib/envd/sysinit", "usr/lib/envd/envd-run"]) {
      assert.equal(mode(root, f), 0o755);
      assert.doesNotMatch(read(root, f), /@BUSYBOX@/);
    }
    assert.match(read(root, "usr/lib/envd/envd-run"), /echo -1000 > \/proc\/self\/oom_score_adj/);
    assert.match(read(root, "usr/lib/envd/envd-run"), /exec "\$ENVD_BIN" \$ENVD_ARGS/);
    assert.ok(lstatSync(join(root, "etc/envd/sysinit.d")).isDirectory());
    assert.match(read(root, "etc/default/envd"), /^ENVD_ARGS=""$/m);
    // The scripts are valid sh.
    for (const f of ["usr/lib/envd/sysinit", "usr/lib/envd/envd-run", "usr/lib/envd/envd-init"]) {
      const syntax = spawnSync("sh", ["-n", join(root, f)], { encoding: "utf8" });
      assert.equal(syntax.status, 0, syntax.stderr);
    }
  });

  test("installing again changes nothing twice, and keeps /etc/default/envd unless --args is given", () => {
    const root = newRoot("busybox");
    assert.equal(install("--root", root, "--bin", fakeBin, "--args", "-isnotfc").code, 0);
    writeFileSync(join(root, "etc/default/envd"), 'ENVD_ARGS="-isnotfc -log-level debug"\n');
    const r = install("--root", root, "--bin", fakeBin);
    assert.equal(r.code, 0, r.out);
    assert.equal(read(root, "etc/inittab").match(/envd-run/g)?.length, 1);
    assert.equal(read(root, "etc/default/envd"), 'ENVD_ARGS="-isnotfc -log-level debug"\n');
    assert.equal(install("--root", root, "--bin", fakeBin, "--args", "").code, 0);
    assert.match(read(root, "etc/default/envd"), /^ENVD_ARGS=""$/m);
  });

  test("an image's own inittab and /sbin/init are kept; envd is added to the inittab", () => {
    const root = newRoot("busybox");
    mkdirSync(join(root, "etc"));
    mkdirSync(join(root, "sbin"));
    writeFileSync(join(root, "etc/inittab"), "::sysinit:/etc/init.d/rcS\ntty1::respawn:/sbin/getty 38400 tty1\n");
    writeFileSync(join(root, "sbin/init"), "");
    const r = install("--root", root, "--bin", fakeBin, "--init", "busybox");
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /boot with init=\/usr\/lib\/envd\/init/);
    const inittab = read(root, "etc/inittab");
    assert.ok(inittab.startsWith("::sysinit:/etc/init.d/rcS\ntty1::respawn:/sbin/getty 38400 tty1\n"));
    assert.match(inittab, /^::respawn:\/usr\/lib\/envd\/envd-run$/m);
    assert.equal(lstatSync(join(root, "sbin/init")).isSymbolicLink(), false);
  });

  test("--busybox copies a busybox into an image that has none", () => {
    const root = newRoot("bare");
    const r = install("--root", root, "--bin", fakeBin, "--init", "busybox", "--busybox", fakeBin);
    assert.equal(r.code, 0, r.out);
    assert.equal(readlinkSync(join(root, "usr/lib/envd/init")), "/usr/bin/busybox");
    assert.match(read(root, "etc/inittab"), /^::shutdown:\/usr\/bin\/busybox sync$/m);
  });

  test("--init envd: envd itself is the kernel's init, after the same machine setup", () => {
    const root = newRoot("bare");
    const r = install("--root", root, "--bin", fakeBin, "--init", "envd");
    assert.equal(r.code, 0, r.out);
    assert.equal(readlinkSync(join(root, "sbin/init")), "/usr/lib/envd/envd-init");
    const init = read(root, "usr/lib/envd/envd-init");
    assert.match(init, /^\/usr\/lib\/envd\/sysinit$/m);
    assert.match(init, /^exec \/usr\/lib\/envd\/envd-run$/m);
    // No busybox in the image: sysinit calls `busybox` from PATH for tools the image lacks.
    assert.match(read(root, "usr/lib/envd/sysinit"), /eval "\$tool\(\) \{ busybox \$tool/);
    assert.equal(existsSync(join(root, "etc/inittab")), false);
    for (const f of ["usr/lib/envd/envd-init", "usr/lib/envd/sysinit", "usr/lib/envd/envd-run"]) {
      assert.equal(mode(root, f), 0o755);
      assert.equal(spawnSync("sh", ["-n", join(root, f)]).status, 0, f);
    }
  });

  test("--init none installs only the binary and its defaults", () => {
    const root = newRoot("systemd");
    assert.equal(install("--root", root, "--bin", fakeBin, "--init", "none").code, 0);
    assert.ok(existsSync(join(root, "usr/bin/envd")));
    assert.ok(existsSync(join(root, "etc/default/envd")));
    assert.equal(existsSync(join(root, "etc/systemd/system/envd.service")), false);
    assert.equal(existsSync(join(root, "etc/inittab")), false);
  });

  test("bad input is refused with a message and installs nothing", () => {
    const cases: [string[], RegExp][] = [
      [["--bin", join(base, "missing")], /no envd binary at/],
      [["--bin", fakeBin, "--init", "openrc"], /--init must be auto, systemd, busybox, envd or none/],
      [["--bin", fakeBin, "--args", `-cmd "rm -rf /"`], /--args must not contain quotes/],
      [["--bin", fakeBin, "--bogus"], /unknown option --bogus/],
      [["--bin", fakeBin, "--init", "busybox"], /the image has no busybox/],
    ];
    for (const [args, message] of cases) {
      const root = newRoot("bare");
      const r = install("--root", root, ...args);
      assert.notEqual(r.code, 0, `${args.join(" ")} succeeded`);
      assert.match(r.out, message);
      assert.equal(existsSync(join(root, "usr/bin/envd")), false);
      assert.equal(existsSync(join(root, "etc/inittab")), false);
    }
    const r = install("--root", join(base, "nope"), "--bin", fakeBin);
    assert.notEqual(r.code, 0);
    assert.match(r.out, /is not a directory/);
  });
});
