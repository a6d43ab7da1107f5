import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Sandbox } from "e2b";
import { createUser, mountTmpfs, sha256, type TestUser, tempDir } from "./files-fixtures.ts";
import { type Daemon, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const queue = chunks.map((c) => (typeof c === "string" ? new TextEncoder().encode(c) : c));
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(next);
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
  return Buffer.concat(chunks);
}

for (const runtime of RUNTIMES) {
  describe(`e2b SDK files [${runtime}]`, { skip: !isRoot && "needs root (useradd, mount)" }, () => {
    let envd: Daemon;
    let sbx: Sandbox;
    let user: TestUser;
    let dir: { path: string } & Disposable;

    before(async () => {
      envd = await startDaemon({ runtime });
      sbx = await envd.sandbox();
      user = createUser();
      dir = tempDir();
    });
    after(async () => {
      await envd?.[Symbol.asyncDispose]();
      user?.[Symbol.dispose]();
      dir?.[Symbol.dispose]();
    });

    test("files.read as text, bytes, blob and stream (with and without gzip)", async () => {
      const path = join(dir.path, "read.bin");
      const data = Buffer.concat([Buffer.from("héllo\n"), randomBytes(300_000)]);
      writeFileSync(path, data);
      const text = join(dir.path, "read.txt");
      writeFileSync(text, "some text ✓\n");

      for (const gzip of [false, true]) {
        assert.equal(await sbx.files.read(text, { gzip }), "some text ✓\n");
        const bytes = await sbx.files.read(path, { format: "bytes", gzip });
        assert.ok(bytes instanceof Uint8Array);
        assert.equal(sha256(bytes), sha256(data));
        const blob = await sbx.files.read(path, { format: "blob", gzip });
        assert.equal(blob.size, data.length);
        assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), sha256(data));
        const stream = await sbx.files.read(path, { format: "stream", gzip });
        assert.equal(sha256(await collect(stream)), sha256(data));
      }
    });

    test("files.read of an empty file, a missing file, a directory", async () => {
      const empty = join(dir.path, "empty");
      writeFileSync(empty, "");
      assert.equal(await sbx.files.read(empty), "");
      assert.equal((await sbx.files.read(empty, { format: "bytes" })).length, 0);
      assert.equal((await sbx.files.read(empty, { format: "blob" })).size, 0);
      await assert.rejects(sbx.files.read(join(dir.path, "missing")), (err: Error) => {
        assert.equal(err.constructor.name, "FileNotFoundError");
        assert.match(err.message, /does not exist/);
        return true;
      });
      await assert.rejects(sbx.files.read(dir.path), (err: Error) => err.constructor.name === "InvalidArgumentError");
    });

    test("files.write of a string, bytes (ArrayBuffer), a Blob and a stream, with and without gzip", async () => {
      const bin = randomBytes(200_000);
      for (const gzip of [false, true]) {
        const base = join(dir.path, gzip ? "gz" : "plain");
        const s = await sbx.files.write(join(base, "s.txt"), "a string ✓", { gzip });
        assert.deepEqual({ path: s.path, name: s.name, type: s.type }, { path: join(base, "s.txt"), name: "s.txt", type: "file" });
        assert.equal(readFileSync(join(base, "s.txt"), "utf8"), "a string ✓");

        const ab = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length) as ArrayBuffer;
        await sbx.files.write(join(base, "ab.bin"), ab, { gzip });
        assert.equal(sha256(readFileSync(join(base, "ab.bin"))), sha256(bin));

        await sbx.files.write(join(base, "blob.bin"), new Blob([bin]), { gzip });
        assert.equal(sha256(readFileSync(join(base, "blob.bin"))), sha256(bin));

        await sbx.files.write(join(base, "stream.txt"), streamOf("first ", "second ", bin), { gzip });
        assert.equal(sha256(readFileSync(join(base, "stream.txt"))), sha256(Buffer.concat([Buffer.from("first second "), bin])));
      }
    });

    test("files.write of several files at once (multipart, and octet-stream in parallel, and gzip)", async () => {
      for (const opts of [{}, { useOctetStream: true }, { gzip: true }]) {
        const tag = JSON.stringify(opts).replace(/\W/g, "") || "multipart";
        const files = [
          { path: join(dir.path, tag, "one.txt"), data: "one" },
          { path: join(dir.path, tag, "nested", "two.bin"), data: new Uint8Array([1, 2, 3]).buffer as ArrayBuffer },
          { path: join(dir.path, tag, "three.txt"), data: new Blob(["three"]) },
        ];
        const infos = await sbx.files.write(files, opts);
        assert.deepEqual(
          infos.map((i) => i.path),
          files.map((f) => f.path),
          tag,
        );
        assert.equal(readFileSync(files[0]?.path as string, "utf8"), "one");
        assert.deepEqual([...readFileSync(files[1]?.path as string)], [1, 2, 3]);
        assert.equal(readFileSync(files[2]?.path as string, "utf8"), "three");
      }
    });

    test("a 32 MiB stream round trip through files.write and files.read(stream)", async () => {
      const path = join(dir.path, "big.bin");
      const chunk = randomBytes(1 << 20);
      let n = 0;
      const source = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (n++ === 32) controller.close();
          else controller.enqueue(chunk);
        },
      });
      await sbx.files.write(path, source);
      assert.equal(statSync(path).size, 32 << 20);
      const back = await collect(await sbx.files.read(path, { format: "stream" }));
      assert.equal(sha256(back), sha256(Buffer.concat(Array(32).fill(chunk))));
    });

    test("user option: relative paths land in the user's home, owned by the user", async () => {
      const info = await sbx.files.write("docs/note.txt", "mine", { user: user.name });
      assert.equal(info.path, join(user.home, "docs", "note.txt"));
      const st = statSync(info.path);
      assert.equal(st.uid, user.uid);
      assert.equal(statSync(join(user.home, "docs")).uid, user.uid);
      assert.equal(await sbx.files.read("docs/note.txt", { user: user.name }), "mine");
      await assert.rejects(sbx.files.write("x.txt", "x", { user: "no-such-user-xyz" }), (err: Error) => err.constructor.name === "AuthenticationError");
    });

    test("metadata: written as xattrs, returned by write and by getInfo; invalid values refused", async () => {
      const path = join(dir.path, "meta.txt");
      const info = await sbx.files.write(path, "m", { metadata: { Author: "mish", purpose: "test" } });
      assert.deepEqual(info.metadata, { author: "mish", purpose: "test" });
      const entry = await sbx.files.getInfo(path);
      assert.deepEqual(entry.metadata, { author: "mish", purpose: "test" });
      const again = await sbx.files.write(path, "m2");
      assert.equal(again.metadata, undefined);
      assert.equal((await sbx.files.getInfo(path)).metadata, undefined);
      // The SDK validates values itself; the daemon's own 400 covers what it lets through.
      await assert.rejects(sbx.files.write(path, "x", { metadata: { big: "v".repeat(5000) } }), (err: Error) => {
        assert.equal(err.constructor.name, "InvalidArgumentError");
        assert.match(err.message, /metadata/);
        return true;
      });
    });

    test("a full disk surfaces as NotEnoughSpaceError and keeps the old file", async () => {
      using disk = mountTmpfs("1m");
      const path = join(disk.path, "f.bin");
      writeFileSync(path, "old");
      for (const opts of [{}, { useOctetStream: true }, { gzip: true }]) {
        await assert.rejects(sbx.files.write(path, new Blob([randomBytes(2 << 20)]), opts), (err: Error) => {
          assert.equal(err.constructor.name, "NotEnoughSpaceError", JSON.stringify(opts));
          assert.match(err.message, /not enough disk space/);
          return true;
        });
        assert.equal(readFileSync(path, "utf8"), "old");
      }
    });
  });
}
