/**
 * /fsfreeze and /fsthaw (FIFREEZE / FITHAW) on a small ext4 filesystem the test loop-mounts, named
 * with ENVD_FSFREEZE_PATH — never on this machine's "/". A writer started while frozen blocks in
 * the kernel (state D) until the thaw.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { eventually, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

interface LoopFs extends Disposable {
  mnt: string;
}

function loopExt4(): LoopFs | string {
  if (!isRoot) return "needs root to loop-mount a filesystem";
  const dir = mkdtempSync(join(tmpdir(), "envd-fsfreeze-"));
  const img = join(dir, "fs.img");
  const mnt = join(dir, "mnt");
  try {
    execFileSync("truncate", ["-s", "16M", img]);
    execFileSync("mkfs.ext4", ["-q", "-F", img], { stdio: "ignore" });
    execFileSync("mkdir", [mnt]);
    execFileSync("mount", ["-o", "loop", img, mnt], { stdio: "ignore" });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot loop-mount an ext4 image here: ${String(err).split("\n")[0]}`;
  }
  return {
    mnt,
    [Symbol.dispose]() {
      try {
        execFileSync("fsfreeze", ["-u", mnt], { stdio: "ignore" });
      } catch {
        // not frozen
      }
      execFileSync("umount", [mnt], { stdio: "ignore" });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const probe = loopExt4();
const skip = typeof probe === "string" ? probe : undefined;
if (typeof probe !== "string") probe[Symbol.dispose]();

const stateOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
};

for (const runtime of RUNTIMES) {
  describe(`fsfreeze [${runtime}]`, { skip }, () => {
    test("freeze blocks writers until the thaw; both are idempotent", async () => {
      using fs = loopExt4() as LoopFs;
      await using envd = await startDaemon({ runtime, env: { ENVD_FSFREEZE_PATH: fs.mnt } });
      assert.equal((await envd.fetch("/fsfreeze", { method: "POST" })).status, 204);
      assert.equal((await envd.fetch("/fsfreeze", { method: "POST" })).status, 204, "already frozen is fine");
      const writer = spawn("/bin/sh", ["-c", `echo data > '${fs.mnt}/f'`], { stdio: "ignore" });
      const exited = new Promise<number | null>((r) => writer.once("exit", (code) => r(code)));
      await eventually(() => stateOf(writer.pid as number) === "D", "the writer to block on the frozen filesystem");
      assert.equal((await envd.fetch("/health")).status, 204, "the daemon is not blocked");
      assert.equal((await envd.fetch("/fsthaw", { method: "POST" })).status, 204);
      assert.equal(await exited, 0);
      assert.equal(readFileSync(join(fs.mnt, "f"), "utf8"), "data\n");
      assert.equal((await envd.fetch("/fsthaw", { method: "POST" })).status, 204, "not frozen is fine");
      assert.ok(envd.logs.some((l) => l.msg === "filesystem frozen" && l.path === fs.mnt));
    });

    test("a target that cannot be frozen gives 500 with the reason", async () => {
      await using envd = await startDaemon({ runtime, env: { ENVD_FSFREEZE_PATH: "/nonexistent-envd-fsfreeze" } });
      const res = await envd.fetch("/fsfreeze", { method: "POST" });
      assert.equal(res.status, 500);
      assert.match(((await res.json()) as { message: string }).message, /nonexistent-envd-fsfreeze/);
    });
  });
}
