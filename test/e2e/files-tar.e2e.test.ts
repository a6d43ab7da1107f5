/**
 * Directories as tar over /files (our addition): curl and GNU tar on the other end, both
 * directions, plain and gzip; owners, modes, mtimes, symlinks and hard links; a generated 1 GiB
 * file and 100,000 small files; malicious archives refused with 400 and nothing written; the
 * ordinary /files answers unchanged when a request does not ask for tar.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import tarStream from "tar-stream";
import { createTestUser, type Daemon, isRoot, removeTestUser, RUNTIMES, startDaemon } from "./harness.ts";

const USER = "envdtar";
const work = mkdtempSync("/tmp/envd-tar-e2e-");
let n = 0;
const fresh = (label: string) => {
  const d = join(work, `${label}-${n++}`);
  mkdirSync(d);
  return d;
};

/** Runs a shell pipeline; resolves with its stdout, rejects with stderr on failure. */
function sh(script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-o", "pipefail", "-c", script], { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.once("exit", (code) =>
      code === 0 ? resolve(Buffer.concat(out).toString()) : reject(new Error(`${script}: exit ${code}: ${Buffer.concat(err).toString()}`)),
    );
  });
}

/** Every path under `dir`: kind and mode, link target or content digest, uid, and mtime for non-links. */
function snapshot(dir: string, opts: { mtimes?: boolean; owners?: boolean } = {}): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(dir, r);
      const st = lstatSync(p);
      let line = `${r} ${(st.mode & 0o170777).toString(8)}`;
      if (st.isSymbolicLink()) line += ` -> ${readlinkSync(p)}`;
      else if (st.isFile()) line += ` ${st.size}:${readFileSync(p).subarray(0, 64).toString("hex")}`;
      if (opts.owners) line += ` ${st.uid}:${st.gid}`;
      if (opts.mtimes && !st.isSymbolicLink()) line += ` @${Math.floor(st.mtimeMs / 1000)}`;
      out.push(line);
      if (st.isDirectory()) walk(r);
    }
  };
  walk("");
  return out;
}

const T = new Date("2022-03-04T05:06:07Z");
function fixture(uid = 0, gid = 0): string {
  const src = fresh("src");
  mkdirSync(join(src, "bin"));
  mkdirSync(join(src, "docs/deep"), { recursive: true });
  writeFileSync(join(src, "README.md"), "# hello\n");
  writeFileSync(join(src, "bin/run"), "#!/bin/sh\necho run\n");
  chmodSync(join(src, "bin/run"), 0o755);
  writeFileSync(join(src, "docs/secret"), "s");
  chmodSync(join(src, "docs/secret"), 0o600);
  writeFileSync(join(src, "docs/deep/empty"), "");
  writeFileSync(join(src, `${"n".repeat(120)}.txt`), "a long name");
  writeFileSync(join(src, "ĉu-unikodo.txt"), "unicode");
  symlinkSync("bin/run", join(src, "run-link"));
  symlinkSync("../README.md", join(src, "docs/readme"));
  linkSync(join(src, "README.md"), join(src, "docs/README.hard"));
  for (const p of ["README.md", "bin/run", "docs/secret", "docs/deep/empty", "docs/deep", "docs", "bin"]) utimesSync(join(src, p), T, T);
  if (uid !== 0) for (const p of ["README.md", "bin", "bin/run", "docs", "docs/secret"]) chownSync(join(src, p), uid, gid);
  return src;
}

async function craft(entries: { name: string; type?: "symlink" | "link" | "directory" | "fifo"; linkname?: string; body?: string }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const e of entries) {
    if (e.type === undefined) pack.entry({ name: e.name }, e.body ?? "x");
    else pack.entry({ name: e.name, type: e.type, ...(e.linkname !== undefined ? { linkname: e.linkname } : {}) });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Trees too big to remove inside a test (removing 100,000 files takes a while): removed at the end. */
const cleanup: string[] = [];
after(async () => {
  await Promise.all(cleanup.map((d) => sh(`rm -rf ${d}`).catch(() => {})));
  rmSync(work, { recursive: true, force: true });
});

/** Made once for both runtimes: 64 MiB of random bytes, then a hole up to 1 GiB (a full 1 GiB stream either way). */
let big: Promise<{ dir: string; sum: string }> | undefined;
function bigFile() {
  big ??= (async () => {
    const dir = fresh("big");
    await sh(`head -c 67108864 /dev/urandom > ${dir}/big.bin && truncate -s 1G ${dir}/big.bin`);
    return { dir, sum: await sh(`sha256sum ${dir}/big.bin | cut -d' ' -f1`) };
  })();
  return big;
}

/**
 * Made once: 100 directories of 1,000 small files each, and GNU tar's archive of them. Creating
 * 100,000 files is most of this test's own cost (disk-bound: ~0.5 ms a file on a VM's ext4), so
 * a child process starts it as soon as the first suite's daemon is up and the small and 1 GiB
 * tests run meanwhile; the 100,000-file test awaits it.
 */
let many: Promise<{ dir: string; archive: string }> | undefined;
function manyFiles() {
  many ??= (async () => {
    const dir = fresh("many");
    cleanup.push(dir);
    const write = `const { mkdirSync, writeFileSync } = require("node:fs");
      for (let d = 0; d < 100; d++) {
        const sub = ${JSON.stringify(dir)} + "/d" + String(d).padStart(2, "0");
        mkdirSync(sub);
        for (let f = 0; f < 1000; f++) writeFileSync(sub + "/f" + f, String(d * 1000 + f));
      }`;
    await sh(`${JSON.stringify(process.execPath)} -e '${write}'`);
    const archive = join(work, "many.tar");
    await sh(`tar -c -f ${archive} -C ${dir} .`);
    return { dir, archive };
  })();
  return many;
}

for (const runtime of RUNTIMES) {
  describe(`/files as tar [${runtime}]`, () => {
    let envd: Daemon;
    let uid = 0;
    let gid = 0;
    before(async () => {
      envd = await startDaemon({ runtime });
      // The big inputs are made once, in other processes, while the first tests run.
      void bigFile().catch(() => {});
      void manyFiles().catch(() => {});
      if (isRoot) {
        createTestUser(USER, ["-M", "-s", "/bin/sh"]);
        const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${USER}:`)) as string;
        [uid, gid] = [Number(line.split(":")[2]), Number(line.split(":")[3])];
      }
    });
    after(async () => {
      await envd[Symbol.asyncDispose]();
      if (isRoot) removeTestUser(USER);
    });
    const url = (q: Record<string, string>) => `${envd.url}/files?${new URLSearchParams(q)}`;

    test("GET a directory with Accept: application/x-tar → GNU tar extracts it: modes, mtimes, owners, symlinks, hard links", async () => {
      const src = fixture(uid, gid);
      for (const [args, extract] of [
        [`-H 'Accept: application/x-tar' '${url({ path: src })}'`, "tar -x -p --same-owner"],
        [`'${url({ path: src, format: "tar.gz" })}'`, "tar -xz -p --same-owner"],
        [`-H 'Accept: application/gzip' '${url({ path: src })}'`, "tar -xz -p --same-owner"],
      ] as const) {
        const out = fresh("out");
        await sh(`curl -sSf ${args} | ${extract} -C ${out}`);
        assert.deepEqual(snapshot(out, { mtimes: true, owners: true }), snapshot(src, { mtimes: true, owners: true }), args);
        assert.equal(statSync(join(out, "docs/README.hard")).ino, statSync(join(out, "README.md")).ino, "hard link");
      }
      const listing = await sh(`curl -sSf '${url({ path: src, format: "tar" })}' | tar -tv`);
      if (isRoot) assert.match(listing, new RegExp(`^-rw-r--r-- ${USER}/${USER} +8 2022-03-04 05:06 README\\.md$`, "m"));
      assert.match(listing, /^lrwxrwxrwx .* run-link -> bin\/run$/m);
      assert.match(listing, /^h.* docs\/README\.hard link to README\.md$/m);
      const head = await envd.fetch(`/files?${new URLSearchParams({ path: src })}`, { headers: { accept: "application/x-tar" } });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-type"), "application/x-tar");
      assert.match(head.headers.get("content-disposition") ?? "", /^attachment; filename="src-\d+\.tar"/);
      await head.body?.cancel();
    });

    test("POST a GNU tar (plain, gzip type, gzip encoding) into a new and an existing directory, owned by the requesting user", async () => {
      const src = fixture();
      const dests: string[] = [];
      for (const [make, headers] of [
        [`tar -c -C ${src} .`, `-H 'Content-Type: application/x-tar'`],
        [`tar -cz -C ${src} .`, `-H 'Content-Type: application/gzip'`],
        [`tar -cz -C ${src} .`, `-H 'Content-Type: application/x-tar' -H 'Content-Encoding: gzip'`],
      ] as const) {
        const dest = join(fresh("dest"), "made/here");
        dests.push(dest);
        const q: Record<string, string> = { path: dest };
        if (isRoot) q.username = USER;
        const answer = JSON.parse(await sh(`${make} | curl -sSf -X POST ${headers} --data-binary @- '${url(q)}'`)) as { path: string; type: string; entries: number }[];
        assert.equal(answer[0]?.path, dest);
        assert.equal(answer[0]?.type, "directory");
        assert.ok((answer[0]?.entries ?? 0) >= 12, JSON.stringify(answer));
        assert.deepEqual(snapshot(dest, { mtimes: true }), snapshot(src, { mtimes: true }), make);
        if (isRoot) {
          for (const p of ["README.md", "bin", "bin/run", "docs/deep/empty", "run-link"]) assert.equal(lstatSync(join(dest, p)).uid, uid, p);
          assert.equal(statSync(join(dest, "..")).uid, uid, "created parents belong to the user too");
        }
        assert.deepEqual(readdirSync(join(dest, "..")), ["here"], "no staging left behind");
      }
      // Into an existing directory: merged, other content kept.
      const existing = dests[0] as string;
      writeFileSync(join(existing, "mine.txt"), "kept");
      writeFileSync(join(existing, "README.md"), "old content");
      await sh(`tar -c -C ${src} README.md docs | curl -sSf -X POST -H 'Content-Type: application/x-tar' --data-binary @- '${url({ path: existing })}'`);
      assert.equal(readFileSync(join(existing, "README.md"), "utf8"), "# hello\n");
      assert.equal(readFileSync(join(existing, "mine.txt"), "utf8"), "kept");
    });

    test("malicious archives → 400 and nothing written", async () => {
      const target = fresh("target");
      writeFileSync(join(target, "existing"), "same");
      const before = snapshot(target, { mtimes: true });
      const outside = fresh("outside");
      const absolute = fresh("abs");
      writeFileSync(join(absolute, "evil"), "x");
      const gnuAbsolute = await new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = [];
        const c = spawn("tar", ["-c", "-P", join(absolute, "evil")]);
        c.stdout.on("data", (d: Buffer) => chunks.push(d));
        c.once("exit", () => resolve(Buffer.concat(chunks)));
      });
      const cases: [string, Buffer, RegExp][] = [
        ["GNU tar -P (absolute names)", gnuAbsolute, /absolute path/],
        ["../ in a name", await craft([{ name: "good" }, { name: `../${outside.split("/").pop()}/evil` }]), /contains '\.\.'/],
        ["a symlink out", await craft([{ name: "l", type: "symlink", linkname: "../../etc" }]), /points out of the target/],
        ["an absolute symlink", await craft([{ name: "l", type: "symlink", linkname: "/etc/passwd" }]), /absolute path/],
        ["a file through an archive symlink", await craft([{ name: "l", type: "symlink", linkname: "." }, { name: "l/x" }]), /goes through the symlink/],
        ["a hard link out", await craft([{ name: "h", type: "link", linkname: "/etc/passwd" }]), /absolute path/],
        ["a FIFO", await craft([{ name: "p", type: "fifo" }]), /fifo entry/],
        ["a truncated archive", (await craft([{ name: "a", body: "z".repeat(10_000) }])).subarray(0, 3000), /invalid tar archive|Unexpected end/],
        ["garbage", Buffer.from("definitely not a tar archive\n".repeat(100)), /invalid tar archive/],
      ];
      for (const [what, body, message] of cases) {
        const res = await envd.fetch(`/files?${new URLSearchParams({ path: target })}`, { method: "POST", headers: { "content-type": "application/x-tar" }, body });
        assert.equal(res.status, 400, what);
        const json = (await res.json()) as { code: number; message: string };
        assert.equal(json.code, 400);
        assert.match(json.message, message, what);
        assert.deepEqual(snapshot(target, { mtimes: true }), before, what);
      }
      assert.deepEqual(readdirSync(outside), []);
      const bad = await envd.fetch(`/files?${new URLSearchParams({ path: target })}`, { method: "POST", headers: { "content-type": "application/gzip" }, body: "not gzip" });
      assert.equal(bad.status, 400);
      assert.match(((await bad.json()) as { message: string }).message, /decompressing/);
    });

    test("bad requests: unknown format, no path, a file as the target; and without tar headers /files answers as before", async () => {
      const dir = fixture();
      const file = join(dir, "README.md");
      const zip = await envd.fetch(`/files?${new URLSearchParams({ path: dir, format: "zip" })}`);
      assert.equal(zip.status, 400);
      assert.deepEqual(await zip.json(), { code: 400, message: "unsupported format 'zip', supported: [tar, tar.gz]" });
      const missing = await envd.fetch(`/files?${new URLSearchParams({ path: join(dir, "nope"), format: "tar" })}`);
      assert.equal(missing.status, 404);
      const tarBody = await craft([{ name: "a" }]);
      const noPath = await envd.fetch("/files", { method: "POST", headers: { "content-type": "application/x-tar" }, body: tarBody });
      assert.equal(noPath.status, 400);
      assert.match(((await noPath.json()) as { message: string }).message, /path query parameter is required/);
      const onFile = await envd.fetch(`/files?${new URLSearchParams({ path: file })}`, { method: "POST", headers: { "content-type": "application/x-tar" }, body: tarBody });
      assert.equal(onFile.status, 400);
      assert.match(((await onFile.json()) as { message: string }).message, /is not a directory/);
      assert.equal(readFileSync(file, "utf8"), "# hello\n");

      // Unchanged: a directory without tar headers is 400 as always; a file asked for with
      // Accept: application/x-tar (or gzip) is the file itself.
      const plainDir = await envd.fetch(`/files?${new URLSearchParams({ path: dir })}`);
      assert.equal(plainDir.status, 400);
      assert.deepEqual(await plainDir.json(), { code: 400, message: `path '${dir}' is a directory` });
      for (const accept of ["application/x-tar", "application/gzip"]) {
        const asFile = await envd.fetch(`/files?${new URLSearchParams({ path: file })}`, { headers: { accept, "accept-encoding": "identity" } });
        assert.equal(asFile.status, 200);
        assert.equal(asFile.headers.get("content-type"), "text/markdown; charset=utf-8");
        assert.equal(await asFile.text(), "# hello\n");
      }
      // A single file with ?format=tar is a one-entry archive.
      const one = await sh(`curl -sSf '${url({ path: file, format: "tar" })}' | tar -t`);
      assert.equal(one, "README.md\n");
    });

    test("a generated 1 GiB file, both directions, through curl and GNU tar", async () => {
      const { dir, sum } = await bigFile();
      // Down: GNU tar reads the stream and writes the member to stdout (no disk write here).
      assert.equal(await sh(`curl -sSf '${url({ path: dir, format: "tar" })}' | tar -xO big.bin | sha256sum | cut -d' ' -f1`), sum);
      // Up: GNU tar makes the stream, the daemon writes every byte.
      const up = join(fresh("big-up"), "in");
      await sh(`tar -c -C ${dir} . | curl -sSf -X POST -H 'Content-Type: application/x-tar' -T - '${url({ path: up })}' > /dev/null`);
      assert.equal(statSync(`${up}/big.bin`).size, 1 << 30);
      assert.equal(await sh(`sha256sum ${up}/big.bin | cut -d' ' -f1`), sum);
      rmSync(up, { recursive: true });
    });

    test("100,000 small files, both directions", async () => {
      const { dir, archive } = await manyFiles();
      const listing = (await sh(`curl -sSf '${url({ path: dir, format: "tar" })}' | tar -t`)).split("\n").filter(Boolean);
      assert.equal(listing.length, 100_100, "100 directories and 100,000 files");
      assert.equal(listing[0], "d00/");
      assert.equal(listing[1], "d00/f0");
      assert.equal(await sh(`curl -sSf '${url({ path: join(dir, "d42"), format: "tar.gz" })}' | tar -xzO f999`), "42999");
      const up = fresh("many-up");
      const answer = JSON.parse(await sh(`curl -sSf -X POST -H 'Content-Type: application/x-tar' -T ${archive} '${url({ path: up })}'`)) as { entries: number }[];
      assert.equal(answer[0]?.entries, 100_100);
      const dirs = readdirSync(up).sort();
      assert.equal(dirs.length, 100, "no staging left behind");
      assert.equal(dirs.reduce((n, d) => n + readdirSync(join(up, d)).length, 0), 100_000);
      assert.equal(readFileSync(join(up, "d07/f123"), "utf8"), "7123");
      cleanup.push(up);
    });
  });
}
