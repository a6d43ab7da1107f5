import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../log.ts";
import { isMountPoint, mountArgv, NFS_OPTIONS, runCommand, VolumeMounter } from "./volume-mounts.ts";

const log = createLogger("error", () => {});

function fakes(opts: { mounted?: Set<string>; fail?: (argv: string[]) => boolean } = {}) {
  const calls: string[] = [];
  const dirs: string[] = [];
  const mounter = new VolumeMounter({
    log,
    budgetMs: 200,
    isMountPoint: (p) => opts.mounted?.has(p) ?? false,
    mkdirp: (p) => dirs.push(p),
    run: async (argv) => {
      calls.push(argv.join(" "));
      return opts.fail?.(argv) ? { code: 32, output: "mount.nfs: Connection refused" } : { code: 0, output: "" };
    },
  });
  return { mounter, calls, dirs };
}

test("the mount command is E2B's, with the target and path as separate arguments", () => {
  assert.deepEqual(mountArgv({ nfsTarget: "10.0.0.2:/vol", path: "/mnt/v" }), [
    "mount",
    "-v",
    "-t",
    "nfs",
    "-o",
    "fg,hard,sync,rsize=1048576,wsize=1048576,mountproto=tcp,mountport=2049,proto=tcp,port=2049,nfsvers=3,noacl,noac,lookupcache=none",
    "10.0.0.2:/vol",
    "/mnt/v",
  ]);
  assert.match(NFS_OPTIONS, /nfsvers=3/);
});

test("each path is mounted once per lifecycle; a new lifecycle unmounts the stale mount first", async () => {
  const mounted = new Set<string>();
  const { mounter, calls, dirs } = fakes({ mounted });
  const m = [
    { nfsTarget: "h:/a", path: "/mnt/a" },
    { nfsTarget: "h:/b", path: "/mnt/b" },
  ];
  await mounter.mountAll(m, "life-1");
  assert.deepEqual(calls, [`mount -v -t nfs -o ${NFS_OPTIONS} h:/a /mnt/a`, `mount -v -t nfs -o ${NFS_OPTIONS} h:/b /mnt/b`]);
  assert.deepEqual(dirs, ["/mnt/a", "/mnt/b"]);
  calls.length = 0;
  await mounter.mountAll(m, "life-1");
  assert.deepEqual(calls, []);
  mounted.add("/mnt/a");
  await mounter.mountAll(m.slice(0, 1), "life-2");
  assert.deepEqual(calls, ["umount --force /mnt/a", `mount -v -t nfs -o ${NFS_OPTIONS} h:/a /mnt/a`]);
});

test("a failed force unmount falls back to a lazy one", async () => {
  const { mounter, calls } = fakes({ mounted: new Set(["/mnt/a"]), fail: (a) => a[1] === "--force" });
  await mounter.mountAll([{ nfsTarget: "h:/a", path: "/mnt/a" }], undefined);
  assert.deepEqual(calls.slice(0, 2), ["umount --force /mnt/a", "umount --lazy /mnt/a"]);
});

test("a failing mount fails with its output and is retried by the next call", async () => {
  let failing = true;
  const { mounter, calls } = fakes({ fail: (a) => a[0] === "mount" && failing });
  await assert.rejects(mounter.mountAll([{ nfsTarget: "h:/a", path: "/mnt/a" }], "l"), (err: Error & { rawMessage?: string }) => {
    assert.equal(err.rawMessage, "mount h:/a on /mnt/a failed: mount.nfs: Connection refused");
    return true;
  });
  failing = false;
  await mounter.mountAll([{ nfsTarget: "h:/a", path: "/mnt/a" }], "l");
  assert.equal(calls.length, 2);
});

test("a mount that outlives the budget fails the call; the path is skipped while it is in flight", async () => {
  let release: () => void = () => {};
  const stuck = new Promise<void>((r) => {
    release = r;
  });
  const calls: string[] = [];
  const mounter = new VolumeMounter({
    log,
    budgetMs: 100,
    isMountPoint: () => false,
    mkdirp: () => {},
    run: async (argv) => {
      calls.push(argv[0]);
      await stuck; // ignores the signal, like a mount stuck in the kernel
      return { code: 0, output: "" };
    },
  });
  await assert.rejects(mounter.mountAll([{ nfsTarget: "h:/a", path: "/mnt/a" }], "l"), /did not finish within 0.1 s/);
  await mounter.mountAll([{ nfsTarget: "h:/a", path: "/mnt/a" }], "l"); // skipped, not attempted twice
  assert.equal(calls.length, 1);
  release();
});

test("runCommand reports exit codes and output, and kills on abort", async () => {
  const ok = await runCommand(["sh", "-c", "echo out; echo err >&2; exit 3"], new AbortController().signal);
  assert.equal(ok.code, 3);
  assert.match(ok.output, /out/);
  assert.match(ok.output, /err/);
  const missing = await runCommand(["/nonexistent/cmd"], new AbortController().signal);
  assert.notEqual(missing.code, 0);
  const killed = await runCommand(["sleep", "30"], AbortSignal.timeout(50));
  assert.equal(killed.code, null);
  assert.equal(isMountPoint("/"), true);
  assert.equal(isMountPoint("/definitely/not/a/mount"), false);
});
