/**
 * Filesystem service, unary RPCs (Stat, MakeDir, Move, ListDir, Remove) through Connect clients
 * (JSON and binary) and raw HTTP: EntryInfo values, path resolution, ownership, and bad input.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { FileType, Filesystem } from "../../src/gen/filesystem/filesystem_pb.js";
import { type Daemon, isRoot, RUNTIMES, startDaemon, createTestUser, removeTestUser } from "./harness.ts";

const TEST_USER = "envd-fs-user";
const TEST_HOME = `/home/${TEST_USER}-home`;


function basic(user: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:`).toString("base64")}` };
}

/** Asserts `p` rejects with a ConnectError of `code` whose message matches `message`. */
async function rejectsWith(p: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectError, `not a ConnectError: ${String(err)}`);
    assert.equal(Code[err.code], Code[code], err.message);
    if (message) assert.match(err.rawMessage, message);
    return true;
  });
}

/** Calls a unary Filesystem method with raw Connect JSON, to see the wire form. */
async function rawCall(envd: Daemon, method: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await envd.fetch(`/filesystem.Filesystem/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: the tests read arbitrary fields of the JSON answer
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, any> };
}

describe("Filesystem service: unary RPCs", () => {
  let uid = 0;
  let gid = 0;
  before(() => {
    if (!isRoot) return;
    createTestUser(TEST_USER, ["-m", "-d", TEST_HOME, "-s", "/bin/sh"]);
    uid = Number(execFileSync("id", ["-u", TEST_USER]).toString().trim());
    gid = Number(execFileSync("id", ["-g", TEST_USER]).toString().trim());
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
        dir = mkdtempSync("/tmp/envd-fs-");
      });
      after(async () => {
        try {
          rmSync(dir, { recursive: true, force: true });
        } finally {
          await envd[Symbol.asyncDispose]();
        }
      });

      test("Stat of a file: every EntryInfo field, with int64 size as a JSON string", async () => {
        const f = join(dir, "stat-file.txt");
        writeFileSync(f, "hello");
        chmodSync(f, 0o640);
        const { entry } = await envd.filesystem.stat({ path: f });
        assert.ok(entry);
        const st = statSync(f, { bigint: true });
        assert.equal(entry.name, "stat-file.txt");
        assert.equal(entry.type, FileType.FILE);
        assert.equal(entry.path, f);
        assert.equal(entry.size, 5n);
        assert.equal(entry.mode, 0o640);
        assert.equal(entry.permissions, "-rw-r-----");
        assert.equal(entry.owner, "root");
        assert.equal(entry.group, "root");
        assert.equal(entry.symlinkTarget, undefined);
        assert.equal(entry.modifiedTime?.seconds, st.mtimeNs / 1_000_000_000n);
        assert.equal(entry.modifiedTime?.nanos, Number(st.mtimeNs % 1_000_000_000n));

        const raw = await rawCall(envd, "Stat", { path: f });
        assert.equal(raw.status, 200);
        assert.equal(raw.json.entry.size, "5");
        assert.equal(raw.json.entry.type, "FILE_TYPE_FILE");
        assert.equal(raw.json.entry.mode, 0o640);
        assert.match(raw.json.entry.modifiedTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
        assert.equal("metadata" in raw.json.entry, false);

        // the binary codec carries the same values
        const bin = await envd.binary.filesystem.stat({ path: f });
        assert.equal(bin.entry?.size, 5n);
        assert.equal(bin.entry?.permissions, "-rw-r-----");
      });

      test("Stat: directories, sticky, setuid, fifo and unnamed owners use Go's FileMode text", async () => {
        const d = join(dir, "modes");
        mkdirSync(d);
        chmodSync(d, 0o755);
        let e = (await envd.filesystem.stat({ path: d })).entry;
        assert.equal(e?.type, FileType.DIRECTORY);
        assert.equal(e?.permissions, "drwxr-xr-x");
        assert.equal(e?.mode, 0o755);

        const sticky = join(d, "sticky");
        mkdirSync(sticky);
        chmodSync(sticky, 0o1777);
        e = (await envd.filesystem.stat({ path: sticky })).entry;
        assert.equal(e?.permissions, "dtrwxrwxrwx");
        assert.equal(e?.mode, 0o777);

        const suid = join(d, "suid");
        writeFileSync(suid, "");
        chmodSync(suid, 0o4755);
        e = (await envd.filesystem.stat({ path: suid })).entry;
        assert.equal(e?.permissions, "urwxr-xr-x");
        assert.equal(e?.mode, 0o755);

        const fifo = join(d, "fifo");
        execFileSync("mkfifo", ["-m", "644", fifo]);
        e = (await envd.filesystem.stat({ path: fifo })).entry;
        assert.equal(e?.type, FileType.UNSPECIFIED);
        assert.equal(e?.permissions, "prw-r--r--");

        e = (await envd.filesystem.stat({ path: "/dev/null" })).entry;
        assert.equal(e?.type, FileType.UNSPECIFIED);
        assert.equal(e?.permissions, "Dcrw-rw-rw-");

        const orphan = join(d, "orphan");
        writeFileSync(orphan, "");
        chownSync(orphan, 54321, 54322);
        e = (await envd.filesystem.stat({ path: orphan })).entry;
        assert.equal(e?.owner, "54321");
        assert.equal(e?.group, "54322");
      });

      test("Stat of symlinks: target's type and mode, resolved target, link's own size; broken links", async () => {
        const target = join(dir, "link-target");
        mkdirSync(target);
        chmodSync(target, 0o750);
        const link = join(dir, "link-to-dir");
        symlinkSync("link-target", link);
        const { entry } = await envd.filesystem.stat({ path: link });
        assert.equal(entry?.type, FileType.DIRECTORY);
        assert.equal(entry?.symlinkTarget, realpathSync(target));
        assert.equal(entry?.permissions, "Lrwxrwxrwx");
        assert.equal(entry?.mode, 0o750);
        assert.equal(entry?.size, BigInt(readlinkSync(link).length));
        assert.equal(entry?.path, link);

        const broken = join(dir, "broken-link");
        symlinkSync("/nonexistent/target", broken);
        const b = (await envd.filesystem.stat({ path: broken })).entry;
        assert.equal(b?.type, FileType.UNSPECIFIED);
        assert.equal(b?.mode, 0);
        assert.equal(b?.symlinkTarget, broken);
        assert.equal(b?.permissions, "Lrwxrwxrwx");
      });

      test("Stat reports user.e2b.* extended attributes as metadata, without the prefix", async () => {
        const f = join(dir, "with-metadata");
        writeFileSync(f, "x");
        execFileSync("python3", [
          "-c",
          "import os,sys; os.setxattr(sys.argv[1], 'user.e2b.owner-team', b'infra'); os.setxattr(sys.argv[1], 'user.other', b'no')",
          f,
        ]);
        const { entry } = await envd.filesystem.stat({ path: f });
        assert.deepEqual({ ...entry?.metadata }, { "owner-team": "infra" });
        const raw = await rawCall(envd, "Stat", { path: f });
        assert.deepEqual(raw.json.entry.metadata, { "owner-team": "infra" });
      });

      test("Stat of a missing path is not_found; unknown user is unauthenticated; ~other is invalid", async () => {
        await rejectsWith(envd.filesystem.stat({ path: join(dir, "missing") }), Code.NotFound, /file not found/);
        await rejectsWith(envd.filesystem.stat({ path: join(dir, "missing", "deeper") }), Code.NotFound);
        await rejectsWith(envd.filesystem.stat({ path: "/" }, { headers: basic("no-such-user-xyz") }), Code.Unauthenticated);
        await rejectsWith(envd.filesystem.stat({ path: "~root/x" }), Code.InvalidArgument, /cannot expand user-specific home dir/);
        const raw = await rawCall(envd, "Stat", { path: join(dir, "missing") });
        assert.equal(raw.status, 404);
        assert.equal(raw.json.code, "not_found");
      });

      test("relative paths, '' and ~ resolve against the requesting user's home", { skip: !isRoot && "needs root (useradd)" }, async () => {
        const fs = createClient(Filesystem, envd.transport({ headers: basic(TEST_USER) }));
        writeFileSync(join(TEST_HOME, "in-home.txt"), "x");
        assert.equal((await fs.stat({ path: "in-home.txt" })).entry?.path, join(TEST_HOME, "in-home.txt"));
        assert.equal((await fs.stat({ path: "~/in-home.txt" })).entry?.path, join(TEST_HOME, "in-home.txt"));
        assert.equal((await fs.stat({ path: "./sub/../in-home.txt" })).entry?.path, join(TEST_HOME, "in-home.txt"));
        assert.equal((await fs.stat({ path: "~" })).entry?.path, TEST_HOME);
        assert.equal((await fs.stat({ path: "" })).entry?.path, TEST_HOME);
        // without Basic auth the default user (root) is used
        assert.equal((await envd.filesystem.stat({ path: "~" })).entry?.path, "/root");
      });

      test("MakeDir creates every level 0755, owned by the requesting user", { skip: !isRoot && "needs root (useradd)" }, async () => {
        const fs = createClient(Filesystem, envd.transport({ headers: basic(TEST_USER) }));
        const { entry } = await fs.makeDir({ path: `made-${runtime}/b/c` });
        const top = join(TEST_HOME, `made-${runtime}`);
        assert.equal(entry?.path, join(top, "b", "c"));
        assert.equal(entry?.name, "c");
        assert.equal(entry?.type, FileType.DIRECTORY);
        assert.equal(entry?.owner, TEST_USER);
        for (const p of [top, join(top, "b"), join(top, "b", "c")]) {
          const st = statSync(p);
          assert.ok(st.isDirectory(), p);
          assert.equal(st.uid, uid, p);
          assert.equal(st.gid, gid, p);
          assert.equal(st.mode & 0o7777, 0o755, p);
        }
        // an existing parent keeps its owner
        assert.equal(statSync(TEST_HOME).uid, uid);
        const made = (await envd.filesystem.makeDir({ path: join(dir, "root-made", "x") })).entry;
        assert.equal(made?.owner, "root");
        assert.equal(statSync(join(dir, "root-made")).uid, 0);
      });

      test("MakeDir on an existing dir is already_exists; on or under a file invalid_argument", async () => {
        const d = join(dir, "exists");
        mkdirSync(d);
        await rejectsWith(envd.filesystem.makeDir({ path: d }), Code.AlreadyExists, /already exists/);
        const raw = await rawCall(envd, "MakeDir", { path: d });
        assert.equal(raw.status, 409);
        assert.equal(raw.json.code, "already_exists");
        const f = join(dir, "a-file");
        writeFileSync(f, "");
        await rejectsWith(envd.filesystem.makeDir({ path: f }), Code.InvalidArgument, /not a directory/);
        await rejectsWith(envd.filesystem.makeDir({ path: join(f, "sub") }), Code.InvalidArgument, /not a directory/);
        await rejectsWith(envd.filesystem.makeDir({ path: "~nobody/x" }), Code.InvalidArgument);
      });

      test("Move creates the destination's parents for the user and returns the destination", { skip: !isRoot && "needs root (useradd)" }, async () => {
        const fs = createClient(Filesystem, envd.transport({ headers: basic(TEST_USER) }));
        const src = join(TEST_HOME, `move-src-${runtime}.txt`);
        writeFileSync(src, "moved");
        const { entry } = await fs.move({ source: src, destination: `moved-${runtime}/deep/dst.txt` });
        const dst = join(TEST_HOME, `moved-${runtime}`, "deep", "dst.txt");
        assert.equal(entry?.path, dst);
        assert.equal(entry?.name, "dst.txt");
        assert.equal(entry?.type, FileType.FILE);
        assert.equal(entry?.size, 5n);
        assert.throws(() => lstatSync(src), /ENOENT/);
        assert.equal(statSync(join(TEST_HOME, `moved-${runtime}`)).uid, uid);
        assert.equal(statSync(join(TEST_HOME, `moved-${runtime}`, "deep")).uid, uid);

        // a file replaces a file
        const a = join(dir, "replace-a");
        const b = join(dir, "replace-b");
        writeFileSync(a, "new");
        writeFileSync(b, "old");
        await envd.filesystem.move({ source: a, destination: b });
        assert.equal(statSync(b).size, 3);
      });

      test("Move: missing source not_found; onto a non-empty dir failed_precondition; dir onto file invalid_argument", async () => {
        await rejectsWith(envd.filesystem.move({ source: join(dir, "nope"), destination: join(dir, "nope2") }), Code.NotFound);
        const src = join(dir, "mv-dir");
        mkdirSync(src);
        const full = join(dir, "mv-full");
        mkdirSync(full);
        writeFileSync(join(full, "x"), "");
        await rejectsWith(envd.filesystem.move({ source: src, destination: full }), Code.FailedPrecondition, /not empty/);
        const file = join(dir, "mv-file");
        writeFileSync(file, "");
        await rejectsWith(envd.filesystem.move({ source: src, destination: file }), Code.InvalidArgument);
        await rejectsWith(envd.filesystem.move({ source: src, destination: join(src, "inside") }), Code.InvalidArgument, /into itself/);
        await rejectsWith(envd.filesystem.move({ source: src, destination: join(file, "under") }), Code.InvalidArgument, /not a directory/);
      });

      test("ListDir depth 0/1 lists direct children in byte order; depth 2 grandchildren; root excluded", async () => {
        const root = join(dir, "tree");
        mkdirSync(join(root, "b", "b2", "b3"), { recursive: true });
        mkdirSync(join(root, "a"));
        writeFileSync(join(root, "a", "a1.txt"), "1");
        writeFileSync(join(root, "B.txt"), "");
        writeFileSync(join(root, "c.txt"), "cc");
        const names = (entries: { path: string }[]) => entries.map((e) => e.path.slice(root.length + 1));
        for (const depth of [0, 1]) {
          const { entries } = await envd.filesystem.listDir({ path: root, depth });
          assert.deepEqual(names(entries), ["B.txt", "a", "b", "c.txt"]);
        }
        const two = await envd.filesystem.listDir({ path: root, depth: 2 });
        assert.deepEqual(names(two.entries), ["B.txt", "a", "a/a1.txt", "b", "b/b2", "c.txt"]);
        const c = two.entries.find((e) => e.name === "c.txt");
        assert.equal(c?.size, 2n);
        assert.equal(c?.type, FileType.FILE);
        assert.equal(two.entries.find((e) => e.name === "b2")?.type, FileType.DIRECTORY);
        const deep = await envd.binary.filesystem.listDir({ path: root, depth: 10 });
        assert.deepEqual(names(deep.entries), ["B.txt", "a", "a/a1.txt", "b", "b/b2", "b/b2/b3", "c.txt"]);
      });

      test("ListDir of a symlinked dir re-roots entries; symlinks inside are listed, never followed", async () => {
        const real = join(dir, "real-tree");
        mkdirSync(join(real, "sub"), { recursive: true });
        writeFileSync(join(real, "sub", "f"), "");
        symlinkSync(real, join(real, "loop")); // a link back to the tree itself
        symlinkSync(join(real, "sub"), join(real, "sub-link"));
        const via = join(dir, "via-link");
        symlinkSync(real, via);
        const { entries } = await envd.filesystem.listDir({ path: via, depth: 5 });
        assert.deepEqual(
          entries.map((e) => e.path),
          [join(via, "loop"), join(via, "sub"), join(via, "sub", "f"), join(via, "sub-link")],
        );
        const link = entries.find((e) => e.name === "sub-link");
        assert.equal(link?.type, FileType.DIRECTORY);
        assert.equal(link?.symlinkTarget, realpathSync(join(real, "sub")));
      });

      test("ListDir bad input: a file, a missing path, depth out of range, a symlink loop", async () => {
        const f = join(dir, "list-file");
        writeFileSync(f, "");
        await rejectsWith(envd.filesystem.listDir({ path: f, depth: 1 }), Code.InvalidArgument, /not a directory/);
        await rejectsWith(envd.filesystem.listDir({ path: join(dir, "list-missing"), depth: 1 }), Code.NotFound);
        await rejectsWith(envd.filesystem.listDir({ path: dir, depth: 257 }), Code.InvalidArgument, /depth must be between 0 and 256/);
        await rejectsWith(envd.filesystem.listDir({ path: dir, depth: 4294967295 }), Code.InvalidArgument, /depth/);
        symlinkSync(join(dir, "loop-b"), join(dir, "loop-a"));
        symlinkSync(join(dir, "loop-a"), join(dir, "loop-b"));
        await rejectsWith(envd.filesystem.listDir({ path: join(dir, "loop-a"), depth: 1 }), Code.FailedPrecondition, /symlink/);
        // a negative depth cannot even be decoded
        const raw = await rawCall(envd, "ListDir", { path: dir, depth: -1 });
        assert.equal(raw.status, 400);
        assert.equal(raw.json.code, "invalid_argument");
      });

      test("Remove deletes a non-empty dir; a missing path is success; an immutable file is permission_denied", async () => {
        const d = join(dir, "rm-tree");
        mkdirSync(join(d, "x", "y"), { recursive: true });
        writeFileSync(join(d, "x", "y", "z"), "z");
        await envd.filesystem.remove({ path: d });
        assert.throws(() => lstatSync(d), /ENOENT/);
        await envd.filesystem.remove({ path: d });
        await envd.filesystem.remove({ path: join(dir, "a-file-that", "never-was") });

        const imm = join(dir, "immutable");
        writeFileSync(imm, "");
        execFileSync("chattr", ["+i", imm]);
        try {
          await rejectsWith(envd.filesystem.remove({ path: imm }), Code.PermissionDenied, /permission denied/);
          await rejectsWith(envd.filesystem.move({ source: imm, destination: join(dir, "imm2") }), Code.PermissionDenied);
          const raw = await rawCall(envd, "Remove", { path: imm });
          assert.equal(raw.status, 403);
          // inside a directory: the directory and the file stay, and the error names the file
          const d2 = join(dir, "rm-with-immutable");
          mkdirSync(d2);
          writeFileSync(join(d2, "ok"), "");
          execFileSync("chattr", ["-i", imm]);
          renameSync(imm, join(d2, "immutable"));
          execFileSync("chattr", ["+i", join(d2, "immutable")]);
          try {
            await rejectsWith(envd.filesystem.remove({ path: d2 }), Code.PermissionDenied, /rm-with-immutable\/immutable/);
            assert.ok(lstatSync(join(d2, "immutable")).isFile());
          } finally {
            execFileSync("chattr", ["-i", join(d2, "immutable")]);
          }
        } finally {
          try {
            execFileSync("chattr", ["-i", imm], { stdio: "ignore" });
          } catch {} // moved into the directory above
        }
      });

      test("after /init, '' is the default workdir and the default user owns what MakeDir creates", { skip: !isRoot && "needs root (useradd)" }, async () => {
        await using own = await startDaemon({ runtime });
        const workdir = join(dir, "workdir");
        mkdirSync(workdir);
        const res = await own.fetch("/init", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ defaultUser: TEST_USER, defaultWorkdir: workdir }),
        });
        assert.equal(res.status, 204);
        assert.equal((await own.filesystem.stat({ path: "" })).entry?.path, workdir);
        assert.equal((await own.filesystem.listDir({ path: "", depth: 1 })).entries.length, 0);
        // relative paths still start at the user's home, not the workdir (as in Go envd)
        const made = await own.filesystem.makeDir({ path: `init-made-${runtime}/x` });
        assert.equal(made.entry?.path, join(TEST_HOME, `init-made-${runtime}`, "x"));
        assert.equal(made.entry?.owner, TEST_USER);
        assert.equal(statSync(join(TEST_HOME, `init-made-${runtime}`)).uid, uid);
      });

      test("User-Agent connect-python gets the legacy EntryInfo and X-E2B-Legacy-SDK", async () => {
        const f = join(dir, "legacy.txt");
        writeFileSync(f, "abc");
        const legacy = await rawCall(envd, "Stat", { path: f }, { "user-agent": "connect-python" });
        assert.equal(legacy.status, 200);
        assert.equal(legacy.headers.get("x-e2b-legacy-sdk"), "true");
        assert.deepEqual(legacy.json.entry, { name: "legacy.txt", type: "FILE_TYPE_FILE", path: f });
        const list = await rawCall(envd, "ListDir", { path: dir, depth: 1 }, { "user-agent": "connect-python" });
        for (const e of list.json.entries) assert.deepEqual(Object.keys(e).sort(), e.type ? ["name", "path", "type"] : ["name", "path"]);
        const modern = await rawCall(envd, "Stat", { path: f }, { "user-agent": "connect-python/1.0" });
        assert.equal(modern.headers.get("x-e2b-legacy-sdk"), null);
        assert.equal(modern.json.entry.size, "3");
      });
    });
  }
});
