/**
 * The Filesystem service through the real e2b SDK (connect-web, JSON): files.list, exists,
 * getInfo, makeDir, rename, remove and watchDir with and without recursion, including the errors
 * the SDK raises for bad input.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { FilesystemEvent } from "e2b";
import { type Daemon, eventually, isRoot, RUNTIMES, startDaemon, createTestUser, removeTestUser } from "./harness.ts";

const TEST_USER = "envd-fs-sdk-user";
const TEST_HOME = `/home/${TEST_USER}-home`;


async function rejectsNamed(p: Promise<unknown>, name: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error) => {
    assert.equal(err.constructor.name, name, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe("Filesystem service through the e2b SDK", () => {
  before(() => {
    if (!isRoot) return;
    createTestUser(TEST_USER, ["-m", "-d", TEST_HOME, "-s", "/bin/sh"]);
  });
  after(() => {
    if (!isRoot) return;
    removeTestUser(TEST_USER);
  });

  for (const runtime of RUNTIMES) {
    describe(`[${runtime}]`, () => {
      let envd: Daemon;
      let dir: string;
      before(async () => {
        envd = await startDaemon({ runtime });
        dir = mkdtempSync("/tmp/envd-fs-sdk-");
      });
      after(async () => {
        try {
          rmSync(dir, { recursive: true, force: true });
        } finally {
          await envd[Symbol.asyncDispose]();
        }
      });

      test("list, exists and getInfo", async () => {
        const sbx = await envd.sandbox();
        const root = join(dir, "list");
        mkdirSync(join(root, "sub", "deeper"), { recursive: true });
        writeFileSync(join(root, "a.txt"), "abc");
        chmodSync(join(root, "a.txt"), 0o644);
        writeFileSync(join(root, "sub", "b.txt"), "");
        symlinkSync(join(root, "sub"), join(root, "link"));
        execFileSync("mkfifo", [join(root, "pipe")]);

        const top = await sbx.files.list(root);
        // the fifo is FILE_TYPE_UNSPECIFIED, which the SDK leaves out
        assert.deepEqual(
          top.map((e) => [e.name, e.type]),
          [
            ["a.txt", "file"],
            ["link", "dir"],
            ["sub", "dir"],
          ],
        );
        const a = top[0];
        assert.equal(a?.path, join(root, "a.txt"));
        assert.equal(a?.size, 3);
        assert.equal(a?.mode, 0o644);
        assert.equal(a?.permissions, "-rw-r--r--");
        assert.equal(a?.owner, "root");
        assert.equal(a?.group, "root");
        assert.ok(a?.modifiedTime instanceof Date);
        assert.equal(a?.modifiedTime?.getTime(), Math.floor(statSync(join(root, "a.txt")).mtimeMs));
        assert.equal(top[1]?.symlinkTarget, join(root, "sub"));

        const deep = await sbx.files.list(root, { depth: 3 });
        assert.deepEqual(
          deep.map((e) => e.path.slice(root.length + 1)),
          ["a.txt", "link", "sub", "sub/b.txt", "sub/deeper"],
        );

        assert.equal(await sbx.files.exists(join(root, "a.txt")), true);
        assert.equal(await sbx.files.exists(join(root, "nope")), false);
        const info = await sbx.files.getInfo(join(root, "sub"));
        assert.equal(info.type, "dir");
        assert.equal(info.name, "sub");
        assert.equal(info.permissions.startsWith("d"), true);
      });

      test("bad input: missing paths, a file given as a directory, depth out of range, ~other", async () => {
        const sbx = await envd.sandbox();
        const f = join(dir, "plain-file");
        writeFileSync(f, "");
        await rejectsNamed(sbx.files.list(join(dir, "missing")), "FileNotFoundError");
        await rejectsNamed(sbx.files.getInfo(join(dir, "missing")), "FileNotFoundError");
        await rejectsNamed(sbx.files.rename(join(dir, "missing"), join(dir, "x")), "FileNotFoundError");
        await rejectsNamed(sbx.files.list(f), "InvalidArgumentError", /not a directory/);
        await rejectsNamed(sbx.files.makeDir(f), "InvalidArgumentError", /not a directory/);
        await rejectsNamed(sbx.files.list(dir, { depth: 0 }), "InvalidArgumentError"); // refused by the SDK itself
        await rejectsNamed(sbx.files.list(dir, { depth: 1000 }), "InvalidArgumentError", /depth must be between/);
        await rejectsNamed(sbx.files.getInfo("~someone/x"), "InvalidArgumentError", /home dir/);
        await rejectsNamed(sbx.files.list("/", { user: "no-such-user-xyz" }), "AuthenticationError");
        await rejectsNamed(sbx.files.watchDir(join(dir, "missing"), () => {}), "FileNotFoundError");
        await rejectsNamed(sbx.files.watchDir(f, () => {}), "InvalidArgumentError", /not a directory/);
      });

      test("makeDir (true, then false), rename and remove, as a user", { skip: !isRoot && "needs root (useradd)" }, async () => {
        const sbx = await envd.sandbox();
        assert.equal(await sbx.files.makeDir(`sdk-${runtime}/x/y`, { user: TEST_USER }), true);
        assert.equal(await sbx.files.makeDir(`sdk-${runtime}/x/y`, { user: TEST_USER }), false);
        const uid = Number(execFileSync("id", ["-u", TEST_USER]).toString().trim());
        assert.equal(statSync(join(TEST_HOME, `sdk-${runtime}`)).uid, uid);
        assert.equal(statSync(join(TEST_HOME, `sdk-${runtime}`, "x", "y")).uid, uid);

        writeFileSync(join(TEST_HOME, `sdk-${runtime}`, "x", "y", "f.txt"), "12");
        const moved = await sbx.files.rename(join(TEST_HOME, `sdk-${runtime}`, "x", "y", "f.txt"), `sdk-${runtime}/z/g.txt`, {
          user: TEST_USER,
        });
        assert.equal(moved.path, join(TEST_HOME, `sdk-${runtime}`, "z", "g.txt"));
        assert.equal(moved.type, "file");
        assert.equal(moved.size, 2);
        assert.equal(await sbx.files.exists(join(TEST_HOME, `sdk-${runtime}`, "x", "y", "f.txt")), false);
        assert.equal(statSync(join(TEST_HOME, `sdk-${runtime}`, "z")).uid, uid);

        await sbx.files.remove(`sdk-${runtime}`, { user: TEST_USER });
        assert.equal(await sbx.files.exists(join(TEST_HOME, `sdk-${runtime}`)), false);
        await sbx.files.remove(join(TEST_HOME, `sdk-${runtime}`)); // already gone: still fine
      });

      test("watchDir without recursion, with includeEntry, and stop", async () => {
        const sbx = await envd.sandbox();
        const d = join(dir, "watch-flat");
        mkdirSync(join(d, "sub"), { recursive: true });
        const events: FilesystemEvent[] = [];
        let exited: Error | undefined | null = null;
        const handle = await sbx.files.watchDir(d, (e) => void events.push(e), {
          includeEntry: true,
          onExit: (err) => {
            exited = err;
          },
        });
        writeFileSync(join(d, "f.txt"), "hi");
        writeFileSync(join(d, "sub", "ignored.txt"), "");
        chmodSync(join(d, "f.txt"), 0o600);
        await eventually(() => events.some((e) => e.type === "chmod"), "the chmod");
        rmSync(join(d, "f.txt"));
        await eventually(() => events.some((e) => e.type === "remove"), "the remove");
        assert.deepEqual(
          events.map((e) => `${e.type} ${e.name}`),
          ["create f.txt", "write f.txt", "chmod f.txt", "remove f.txt"],
        );
        assert.equal(events[0]?.entry?.path, join(d, "f.txt"));
        assert.equal(events[0]?.entry?.type, "file");
        assert.equal(events[2]?.entry?.mode, 0o600);
        assert.equal(events[3]?.entry, undefined);
        await handle.stop();
        writeFileSync(join(d, "after-stop"), "");
        await eventually(() => exited !== null, "onExit after stop").catch(() => {});
        assert.ok(!events.some((e) => e.name === "after-stop"));
      });

      test("watchDir with recursion sees sub/f.txt and new subtrees", async () => {
        const sbx = await envd.sandbox();
        const d = join(dir, "watch-rec");
        mkdirSync(join(d, "sub"), { recursive: true });
        const events: FilesystemEvent[] = [];
        const handle = await sbx.files.watchDir(d, (e) => void events.push(e), { recursive: true });
        writeFileSync(join(d, "sub", "f.txt"), "x");
        mkdirSync(join(d, "n1", "n2"), { recursive: true });
        writeFileSync(join(d, "n1", "n2", "leaf"), "x");
        await eventually(() => events.some((e) => e.name === "n1/n2/leaf"), "the leaf");
        const names = events.map((e) => `${e.type} ${e.name}`);
        for (const want of ["create sub/f.txt", "write sub/f.txt", "create n1", "create n1/n2", "create n1/n2/leaf"]) {
          assert.ok(names.includes(want), `${want} in ${JSON.stringify(names)}`);
        }
        await handle.stop();
      });
    });
  }
});
