import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, linkSync, utimesSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, test } from "node:test";
import tarStream from "tar-stream";
import { EnvdError } from "../errors.ts";
import { extractTar } from "./tar-extract.ts";
import { entryName, resolvesOutside } from "./tar-safety.ts";
import { packTree } from "./tar-pack.ts";

const names = { userName: (uid: number) => (uid === 0 ? "root" : String(uid)), groupName: (gid: number) => (gid === 0 ? "root" : String(gid)) };
const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const work = mkdtempSync(join(tmpdir(), "envd-tar-"));
after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = (label: string) => {
  const d = join(work, `${label}-${n++}`);
  mkdirSync(d);
  return d;
};
const signal = new AbortController().signal;

/** Every path under `dir` with its kind, mode and (for links) target: what "unchanged" means. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      const extra = st.isSymbolicLink() ? `->${readlinkSync(join(dir, r))}` : st.isFile() ? `:${readFileSync(join(dir, r), "hex")}` : "";
      out.push(`${r} ${(st.mode & 0o170777).toString(8)}${extra}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk("");
  return out;
}

function fixture(): string {
  const src = fresh("src");
  mkdirSync(join(src, "sub/deep"), { recursive: true });
  writeFileSync(join(src, "a.txt"), "hello\n");
  writeFileSync(join(src, "sub/run.sh"), "#!/bin/sh\necho hi\n");
  chmodSync(join(src, "sub/run.sh"), 0o750);
  writeFileSync(join(src, "sub/deep/empty"), "");
  writeFileSync(join(src, `long-${"x".repeat(150)}.txt`), "long name");
  writeFileSync(join(src, "ünïcode.txt"), "utf8");
  symlinkSync("sub/run.sh", join(src, "link"));
  symlinkSync("../a.txt", join(src, "sub/up"));
  linkSync(join(src, "a.txt"), join(src, "sub/hard"));
  const t = new Date("2021-05-06T07:08:09Z");
  for (const p of ["a.txt", "sub/run.sh", "sub/deep/empty", "sub/deep", "sub"]) utimesSync(join(src, p), t, t);
  return src;
}

async function packToBuffer(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of packTree(dir, { names, signal })) chunks.push(c);
  return Buffer.concat(chunks);
}

async function malicious(entries: { name: string; type?: "file" | "symlink" | "link" | "directory" | "character-device"; linkname?: string; body?: string }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const e of entries) {
    if (e.type === "file" || e.type === undefined) pack.entry({ name: e.name }, e.body ?? "x");
    else pack.entry({ name: e.name, type: e.type, ...(e.linkname !== undefined ? { linkname: e.linkname } : {}) });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

test("packTree: GNU tar lists and extracts it with modes, mtimes, symlinks and hard links intact", async () => {
  const src = fixture();
  const archive = await packToBuffer(src);
  const out = fresh("gnu-out");
  execFileSync("tar", ["-x", "-p", "-C", out], { input: archive });
  assert.deepEqual(snapshot(out), snapshot(src));
  assert.equal(statSync(join(out, "sub/run.sh")).mtime.toISOString(), "2021-05-06T07:08:09.000Z");
  assert.equal(statSync(join(out, "sub")).mtime.toISOString(), "2021-05-06T07:08:09.000Z");
  assert.equal(statSync(join(out, "sub/hard")).ino, statSync(join(out, "a.txt")).ino, "hard link kept");
  const listing = execFileSync("tar", ["-tv", "--numeric-owner"], { input: archive }).toString();
  assert.match(listing, /^drwxr-xr-x 0\/0 +0 2021-05-06 07:08 sub\/$/m);
  assert.match(listing, /^lrwxrwxrwx .* link -> sub\/run\.sh$/m);
  assert.match(listing, /^hrw.* sub\/hard link to a\.txt$/m);
  const named = execFileSync("tar", ["-tv"], { input: archive }).toString();
  assert.match(named, /root\/root/, "owner names carried");
});

test("extractTar: a GNU tar archive lands with modes, mtimes and links, owned by the user", async () => {
  const src = fixture();
  const archive = execFileSync("tar", ["-c", "-C", src, "."]);
  const target = join(fresh("dest"), "new/nested");
  const result = await extractTar(Readable.from([archive]), target, { owner, signal });
  assert.deepEqual(snapshot(target), snapshot(src));
  assert.equal(statSync(join(target, "sub/run.sh")).mtime.toISOString(), "2021-05-06T07:08:09.000Z");
  assert.equal(statSync(join(target, "sub/deep")).mtime.toISOString(), "2021-05-06T07:08:09.000Z");
  assert.equal(statSync(join(target, "sub/hard")).ino, statSync(join(target, "a.txt")).ino);
  assert.equal(statSync(join(target, "a.txt")).uid, owner.uid);
  assert.ok(result.entries >= 9);
  assert.deepEqual(readdirSync(join(target, "..")), ["nested"], "no staging left behind");
});

test("extractTar into an existing directory merges: files replaced by rename, other content kept", async () => {
  const target = fresh("merge");
  mkdirSync(join(target, "sub"));
  writeFileSync(join(target, "sub/keep"), "kept");
  writeFileSync(join(target, "a.txt"), "old");
  const before = statSync(join(target, "a.txt")).ino;
  const archive = await malicious([{ name: "a.txt", body: "new" }, { name: "sub/", type: "directory" }, { name: "sub/added", body: "added" }]);
  await extractTar(Readable.from([archive]), target, { owner, signal });
  assert.equal(readFileSync(join(target, "a.txt"), "utf8"), "new");
  assert.notEqual(statSync(join(target, "a.txt")).ino, before, "replaced by a rename, not rewritten in place");
  assert.equal(readFileSync(join(target, "sub/keep"), "utf8"), "kept");
  assert.equal(readFileSync(join(target, "sub/added"), "utf8"), "added");
  assert.deepEqual(readdirSync(target).sort(), ["a.txt", "sub"]);
});

const refusals: [string, Parameters<typeof malicious>[0], RegExp][] = [
  ["an absolute path", [{ name: "ok.txt" }, { name: "/etc/evil" }], /absolute path/],
  ["a .. component", [{ name: "ok.txt" }, { name: "sub/../../evil" }], /contains '\.\.'/],
  ["a symlink to an absolute path", [{ name: "l", type: "symlink", linkname: "/etc" }], /points to an absolute path/],
  ["a symlink climbing out", [{ name: "d/", type: "directory" }, { name: "d/l", type: "symlink", linkname: "../../x" }], /points out of the target/],
  [
    "a symlink out through another symlink",
    [
      { name: "d/", type: "directory" },
      { name: "d/up", type: "symlink", linkname: ".." },
      { name: "esc", type: "symlink", linkname: "d/up/.." },
    ],
    /points out of the target \(through the symlink 'd\/up'\)/,
  ],
  ["a file written through a symlink of the archive", [{ name: "l", type: "symlink", linkname: "." }, { name: "l/f" }], /goes through the symlink 'l'/],
  ["a hard link to a file outside", [{ name: "h", type: "link", linkname: "../../etc/passwd" }], /contains '\.\.'/],
  ["a hard link to nothing in the archive", [{ name: "h", type: "link", linkname: "missing" }], /must name an earlier file/],
  ["a device", [{ name: "dev", type: "character-device" }], /character-device entry/],
];

for (const [what, entries, message] of refusals) {
  test(`extractTar refuses ${what} with invalid_argument, nothing written`, async () => {
    const target = fresh("evil");
    writeFileSync(join(target, "existing"), "same");
    const before = snapshot(target);
    const archive = await malicious(entries);
    await assert.rejects(extractTar(Readable.from([archive]), target, { owner, signal }), (err: unknown) => {
      assert.ok(err instanceof EnvdError, String(err));
      assert.equal(err.code, 3);
      assert.match(err.rawMessage, message);
      return true;
    });
    assert.deepEqual(snapshot(target), before);
  });
}

test("extractTar: an existing symlink in the target counts when links are resolved; a directory over it is refused", async () => {
  const target = fresh("existing-link");
  symlinkSync("/etc", join(target, "etc"));
  const viaExisting = await malicious([{ name: "x", type: "symlink", linkname: "etc/passwd" }]);
  await assert.rejects(extractTar(Readable.from([viaExisting]), target, { owner, signal }), /through the symlink 'etc'/);
  const dirOver = await malicious([{ name: "etc/", type: "directory" }, { name: "etc/evil" }]);
  await assert.rejects(extractTar(Readable.from([dirOver]), target, { owner, signal }), /exists in the target and is not a directory/);
  assert.deepEqual(readdirSync(target), ["etc"]);
});

test("extractTar: truncated and garbage bodies are invalid_argument, nothing written", async () => {
  const target = fresh("broken");
  const good = await malicious([{ name: "a", body: "y".repeat(5000) }, { name: "b" }]);
  for (const body of [good.subarray(0, 1200), Buffer.from("this is not a tar archive at all".repeat(40))]) {
    await assert.rejects(extractTar(Readable.from([body]), target, { owner, signal }), (err: unknown) => err instanceof EnvdError && err.code === 3);
    assert.deepEqual(readdirSync(target), []);
  }
});

test("entryName and resolvesOutside", async () => {
  assert.equal(entryName("./a//b/"), "a/b");
  assert.equal(entryName("./"), "");
  assert.throws(() => entryName("a/../b"), /'\.\.'/);
  const none = async () => ({ t: "missing" as const });
  assert.equal(await resolvesOutside("a/b", "../../c", none), undefined);
  assert.equal(await resolvesOutside("a/b", "../../../c", none), "..");
  const loop = async (rel: string) => (rel === "l" ? { t: "symlink" as const, target: "l" } : { t: "missing" as const });
  assert.equal(await resolvesOutside("", "l/x", loop), undefined, "a loop never resolves, so it cannot leave");
});

test("GNU tar is on this machine", () => {
  assert.equal(spawnSync("tar", ["--version"]).status, 0);
});
