import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { EnvdError, httpStatusOf } from "../errors.ts";
import { readMetadata } from "../fs/xattr.ts";
import { isUploadTempName, writeFileAtomically } from "./atomic-write.ts";
import { ensureDirs } from "../fs/make-dir.ts";
import { resolveWriteTarget } from "./dirs.ts";

const root = mkdtempSync(join(tmpdir(), "envd-atomic-"));
after(() => rmSync(root, { recursive: true, force: true }));
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const opts = () => ({ owner: me, signal: new AbortController().signal });

async function* chunks(...parts: (string | Error)[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) {
    if (p instanceof Error) throw p;
    yield Buffer.from(p);
  }
}

const leftovers = (dir: string) => readdirSync(dir).filter(isUploadTempName);

describe("writeFileAtomically", () => {
  test("writes the concatenated source and reports the byte count", async () => {
    const target = join(root, "a", "b", "f.txt");
    const r = await writeFileAtomically(target, chunks("hello ", "world"), opts());
    assert.deepEqual(r, { path: target, bytes: 11 });
    assert.equal(readFileSync(target, "utf8"), "hello world");
    assert.equal(statSync(target).mode & 0o777, 0o666 & ~process.umask());
    assert.deepEqual(leftovers(join(root, "a", "b")), []);
  });

  test("a failing source leaves the old file and no temporary file, and rethrows as is", async () => {
    const target = join(root, "keep.txt");
    writeFileSync(target, "old");
    const boom = new Error("source broke");
    await assert.rejects(writeFileAtomically(target, chunks("new", boom), opts()), (err) => err === boom);
    assert.equal(readFileSync(target, "utf8"), "old");
    assert.deepEqual(leftovers(root), []);
  });

  test("an abort leaves nothing behind", async () => {
    const target = join(root, "aborted.txt");
    const controller = new AbortController();
    async function* slow() {
      yield Buffer.from("part");
      controller.abort();
      yield Buffer.from("more");
    }
    await assert.rejects(writeFileAtomically(target, slow(), { owner: me, signal: controller.signal }));
    assert.equal(existsSync(target), false);
    assert.deepEqual(leftovers(root), []);
  });

  test("a short body is refused when the length was declared", async () => {
    const target = join(root, "short.txt");
    await assert.rejects(
      writeFileAtomically(target, chunks("abc"), { ...opts(), expectedBytes: 10 }),
      (err: unknown) => err instanceof EnvdError && /ended after 3 of 10 bytes/.test(err.rawMessage),
    );
    assert.equal(existsSync(target), false);
    assert.deepEqual(leftovers(root), []);
  });

  test("replacing keeps the permission bits and swaps the inode", async () => {
    const target = join(root, "exec.sh");
    writeFileSync(target, "old");
    chmodSync(target, 0o750);
    const ino = statSync(target).ino;
    await writeFileAtomically(target, chunks("new"), opts());
    assert.equal(statSync(target).mode & 0o777, 0o750);
    assert.notEqual(statSync(target).ino, ino);
  });

  test("a directory or a FIFO target is refused with 400", async () => {
    await assert.rejects(writeFileAtomically(root, chunks("x"), opts()), (err: unknown) => httpStatusOf(err) === 400);
  });

  test("metadata lands with the content; none given leaves none", async () => {
    const target = join(root, "meta.txt");
    await writeFileAtomically(target, chunks("m"), { ...opts(), metadata: { a: "1" } });
    assert.deepEqual(await readMetadata(target), { a: "1" });
    await writeFileAtomically(target, chunks("m"), opts());
    assert.equal(await readMetadata(target), undefined);
  });

  test("writes through a symlink chain, creating a dangling link's target", async () => {
    const real = join(root, "real.txt");
    symlinkSync("real.txt", join(root, "l1"));
    symlinkSync(join(root, "l1"), join(root, "l2"));
    const r = await writeFileAtomically(join(root, "l2"), chunks("via links"), opts());
    assert.equal(r.path, real);
    assert.equal(readFileSync(real, "utf8"), "via links");
    assert.ok(statSync(join(root, "l2")).isFile());
  });

  test("many small chunks and a partial writev are reassembled in order", async () => {
    const target = join(root, "many.bin");
    const parts = Array.from({ length: 5000 }, (_, i) => String(i % 10));
    await writeFileAtomically(target, chunks(...parts), opts());
    assert.equal(readFileSync(target, "utf8"), parts.join(""));
  });
});

describe("dirs", () => {
  test("resolveWriteTarget: plain and missing paths are returned unchanged; a link loop is 400", async () => {
    assert.equal(await resolveWriteTarget(join(root, "nope")), join(root, "nope"));
    symlinkSync("loop-b", join(root, "loop-a"));
    symlinkSync("loop-a", join(root, "loop-b"));
    await assert.rejects(resolveWriteTarget(join(root, "loop-a")), (err: unknown) => httpStatusOf(err) === 400);
  });

  test("ensureDirs creates every missing level, is idempotent, and refuses a file on the way", async () => {
    const deep = join(root, "x", "y", "z");
    await ensureDirs(deep, me);
    await ensureDirs(deep, me);
    assert.ok(statSync(deep).isDirectory());
    writeFileSync(join(root, "file"), "f");
    await assert.rejects(ensureDirs(join(root, "file", "sub"), me), (err: unknown) => httpStatusOf(err) === 400);
  });

  test("concurrent ensureDirs on the same path all succeed", async () => {
    const p = join(root, "race", "a", "b");
    await Promise.all(Array.from({ length: 8 }, () => ensureDirs(p, me)));
    assert.ok(statSync(p).isDirectory());
  });
});
