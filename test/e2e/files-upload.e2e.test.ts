import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readMetadata } from "../../src/fs/xattr.ts";
import {
  createUser,
  debris,
  gzipSync,
  jsonOf,
  mountTmpfs,
  multipartBody,
  sha256,
  partialRequest,
  type TestUser,
  tempDir,
} from "./files-fixtures.ts";
import { type Daemon, eventually, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

const q = (params: Record<string, string>) => `/files?${new URLSearchParams(params)}`;
const OCTET = { "content-type": "application/octet-stream" } as const;

for (const runtime of RUNTIMES) {
  describe(`POST /files [${runtime}]`, { skip: !isRoot && "needs root (useradd, mount)" }, () => {
    let envd: Daemon;
    let user: TestUser;
    let dir: { path: string } & Disposable;

    before(async () => {
      envd = await startDaemon({ runtime });
      user = createUser();
      dir = tempDir();
    });
    after(async () => {
      await envd?.[Symbol.asyncDispose]();
      user?.[Symbol.dispose]();
      dir?.[Symbol.dispose]();
    });

    const post = (params: Record<string, string>, body: NonNullable<RequestInit["body"]>, headers: Record<string, string> = {}) =>
      envd.fetch(q(params), { method: "POST", body, headers });

    test("multipart with path → 200 JSON array; the file, its new parents, owner and mode", async () => {
      const target = join(dir.path, "new", "deeper", "a.txt");
      const { body, contentType } = multipartBody([{ name: "file", filename: "ignored-name.txt", data: "alpha" }]);
      const r = await jsonOf(await post({ path: target, username: user.name }, body, { "content-type": contentType }));
      assert.equal(r.status, 200);
      assert.equal(r.contentType, "application/json");
      assert.deepEqual(r.body, [{ path: target, name: "a.txt", type: "file" }]);
      assert.equal(readFileSync(target, "utf8"), "alpha");
      const st = statSync(target);
      assert.equal(st.uid, user.uid);
      assert.equal(st.gid, user.gid);
      assert.equal(st.mode & 0o777, 0o644);
      for (const d of [join(dir.path, "new"), join(dir.path, "new", "deeper")]) {
        const ds = statSync(d);
        assert.equal(ds.uid, user.uid, d);
        assert.equal(ds.mode & 0o777, 0o755, d);
      }
      assert.equal(statSync(dir.path).uid, 0, "an existing parent keeps its owner");
      assert.deepEqual(debris(join(dir.path, "new", "deeper")), []);
    });

    test("several parts without path → each at its filename (absolute or relative to home), in order", async () => {
      const abs = join(dir.path, "multi", "one.txt");
      const { body, contentType } = multipartBody([
        { name: "file", filename: abs, data: "1" },
        { name: "other", data: "ignored field" },
        { name: "file", filename: "sub/two.bin", contentType: "application/octet-stream", data: Buffer.from([0, 1, 2, 255]) },
        { name: "note", filename: "not-a-file-part.txt", data: "ignored: part not named file" },
      ]);
      const r = await jsonOf(await post({ username: user.name }, body, { "content-type": contentType }));
      assert.equal(r.status, 200);
      const two = join(user.home, "sub", "two.bin");
      assert.deepEqual(r.body, [
        { path: abs, name: "one.txt", type: "file" },
        { path: two, name: "two.bin", type: "file" },
      ]);
      assert.equal(readFileSync(abs, "utf8"), "1");
      assert.deepEqual([...readFileSync(two)], [0, 1, 2, 255]);
      assert.equal(existsSync(join(user.home, "not-a-file-part.txt")), false);
      assert.equal(statSync(join(user.home, "sub")).uid, user.uid);
    });

    test("UTF-8 file names in multipart are kept", async () => {
      const target = join(dir.path, "名前 é.txt");
      const { body, contentType } = multipartBody([{ name: "file", filename: target, data: "utf8" }]);
      const r = await jsonOf(await post({}, body, { "content-type": contentType }));
      assert.equal(r.status, 200);
      assert.equal(readFileSync(target, "utf8"), "utf8");
    });

    test("two parts on one path → 400; the first stays written", async () => {
      const target = join(dir.path, "dup.txt");
      const { body, contentType } = multipartBody([
        { name: "file", filename: target, data: "first" },
        { name: "file", filename: target, data: "second" },
      ]);
      const r = await jsonOf(await post({}, body, { "content-type": contentType }));
      assert.equal(r.status, 400);
      assert.match((r.body as { message: string }).message, /cannot upload multiple files to the same path/);
      assert.equal(readFileSync(target, "utf8"), "first");
    });

    test("a part without filename and no path → 400; with path it is written", async () => {
      const { body, contentType } = multipartBody([{ name: "file", data: "no name" }]);
      const r = await jsonOf(await post({}, body, { "content-type": contentType }));
      assert.equal(r.status, 400);
      const target = join(dir.path, "field.txt");
      const again = multipartBody([{ name: "file", data: Buffer.from([0xc3, 0xa9, 0xff, 0x00]) }]);
      const ok = await jsonOf(await post({ path: target }, again.body, { "content-type": again.contentType }));
      assert.equal(ok.status, 200);
      assert.deepEqual([...readFileSync(target)], [0xc3, 0xa9, 0xff, 0x00]);
    });

    test("octet-stream with path → stored; without path → 400", async () => {
      const target = join(dir.path, "raw", "r.bin");
      const data = randomBytes(100_000);
      const r = await jsonOf(await post({ path: target, username: user.name }, data, OCTET));
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, [{ path: target, name: "r.bin", type: "file" }]);
      assert.equal(sha256(readFileSync(target)), sha256(data));
      assert.equal(statSync(target).uid, user.uid);

      const missing = await jsonOf(await post({}, data, OCTET));
      assert.deepEqual(missing.body, { code: 400, message: "path query parameter is required for raw body upload" });
    });

    test("Content-Encoding: gzip is decompressed (octet-stream and whole multipart body)", async () => {
      const target = join(dir.path, "gz.txt");
      const r = await post({ path: target }, gzipSync(Buffer.from("unzipped!")), { ...OCTET, "content-encoding": "gzip" });
      assert.equal(r.status, 200);
      await r.body?.cancel();
      assert.equal(readFileSync(target, "utf8"), "unzipped!");

      const mp = join(dir.path, "gz-multipart.txt");
      const { body, contentType } = multipartBody([{ name: "file", filename: mp, data: "from multipart" }]);
      const r2 = await post({}, gzipSync(body), { "content-type": contentType, "content-encoding": "gzip" });
      assert.equal(r2.status, 200);
      await r2.body?.cancel();
      assert.equal(readFileSync(mp, "utf8"), "from multipart");
    });

    test("a bad gzip stream → 400 and the old file is untouched, with no debris", async () => {
      const target = join(dir.path, "keep-gz.txt");
      writeFileSync(target, "old content");
      const good = gzipSync(randomBytes(200_000));
      const corrupt = Buffer.concat([good.subarray(0, 50_000), Buffer.alloc(100, 0x55), good.subarray(50_100)]);
      for (const body of [corrupt, good.subarray(0, good.length - 20), Buffer.from("not gzip at all")]) {
        const r = await jsonOf(await post({ path: target }, body, { ...OCTET, "content-encoding": "gzip" }));
        assert.equal(r.status, 400);
        assert.match((r.body as { message: string }).message, /error decompressing request body/);
        assert.equal(readFileSync(target, "utf8"), "old content");
        assert.deepEqual(debris(dir.path), []);
      }
    });

    test("unsupported Content-Type or Content-Encoding → 400", async () => {
      const target = join(dir.path, "never.txt");
      for (const headers of [{ "content-type": "text/plain" }, {}, { ...OCTET, "content-encoding": "br" }]) {
        const r = await jsonOf(await post({ path: target }, "x", headers));
        assert.equal(r.status, 400, JSON.stringify(headers));
      }
      const typeless = await jsonOf(await post({ path: target }, "x", { "content-type": "text/plain" }));
      assert.match((typeless.body as { message: string }).message, /^unsupported content type: text\/plain/);
      assert.equal(existsSync(target), false);
    });

    test("upload onto a directory → 400; through a file as a parent → 400", async () => {
      const r = await jsonOf(await post({ path: dir.path }, "x", OCTET));
      assert.deepEqual(r.body, { code: 400, message: `path is a directory: ${dir.path}` });
      writeFileSync(join(dir.path, "plain"), "p");
      const r2 = await jsonOf(await post({ path: join(dir.path, "plain", "child.txt") }, "x", OCTET));
      assert.equal(r2.status, 400);
    });

    test("an existing file is replaced atomically: new inode, content replaced, its mode kept, owner the user", async () => {
      const target = join(dir.path, "script.sh");
      writeFileSync(target, "#!/bin/sh\necho old\n");
      chmodSync(target, 0o755);
      const before = statSync(target);
      const r = await post({ path: target, username: user.name }, "#!/bin/sh\necho new\n", OCTET);
      assert.equal(r.status, 200);
      await r.body?.cancel();
      const after = statSync(target);
      assert.equal(readFileSync(target, "utf8"), "#!/bin/sh\necho new\n");
      assert.notEqual(after.ino, before.ino);
      assert.equal(after.mode & 0o777, 0o755);
      assert.equal(after.uid, user.uid);
    });

    test("a symlink is written through: the link stays, its target gets the content", async () => {
      const real = join(dir.path, "real.txt");
      const link = join(dir.path, "link.txt");
      writeFileSync(real, "before");
      symlinkSync(real, link);
      const r = await jsonOf(await post({ path: link }, "after", OCTET));
      assert.equal(r.status, 200);
      assert.equal(readFileSync(real, "utf8"), "after");
      assert.ok(statSync(link, { throwIfNoEntry: true }) && existsSync(link));
      const dangling = join(dir.path, "dangling");
      symlinkSync(join(dir.path, "created-through-link.txt"), dangling);
      await (await post({ path: dangling }, "made", OCTET)).body?.cancel();
      assert.equal(readFileSync(join(dir.path, "created-through-link.txt"), "utf8"), "made");
    });

    test("unknown username → 401, nothing written", async () => {
      const target = join(dir.path, "nobody.txt");
      const r = await jsonOf(await post({ path: target, username: "no-such-user-xyz" }, "x", OCTET));
      assert.equal(r.status, 401);
      assert.equal(existsSync(target), false);
    });

    test("bad multipart bodies → 400 with no file and no debris", async () => {
      const target = join(dir.path, "badmp", "x.txt");
      mkdirSync(join(dir.path, "badmp"));
      const { body, contentType } = multipartBody([{ name: "file", filename: target, data: "complete part" }]);
      const cases: [string, Buffer, string][] = [
        ["no boundary", body, "multipart/form-data"],
        ["truncated before the closing boundary", body.subarray(0, body.length - 30), contentType],
        ["garbage", Buffer.from("this is not multipart"), contentType],
        ["malformed part header", Buffer.from(`--${contentType.split("=")[1]}\r\nbroken header line\r\n\r\nx\r\n`), contentType],
      ];
      for (const [what, data, type] of cases) {
        const r = await jsonOf(await post({}, data, { "content-type": type }));
        assert.equal(r.status, 400, what);
        assert.equal((r.body as { code: number }).code, 400, what);
        assert.equal(existsSync(target), false, what);
        assert.deepEqual(debris(join(dir.path, "badmp")), [], what);
      }
    });

    test("X-Metadata-* → user.e2b.* xattrs, echoed in the response; a new upload replaces the set", async () => {
      const target = join(dir.path, "meta.txt");
      const r = await jsonOf(
        await post({ path: target }, "m", { ...OCTET, "X-Metadata-Author": "mish", "x-metadata-purpose": "upload test" }),
      );
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, [{ path: target, name: "meta.txt", type: "file", metadata: { author: "mish", purpose: "upload test" } }]);
      assert.deepEqual(await readMetadata(target), { author: "mish", purpose: "upload test" });

      const stat = await envd.filesystem.stat({ path: target });
      assert.deepEqual({ ...stat.entry?.metadata }, { author: "mish", purpose: "upload test" });

      await (await post({ path: target }, "m2", { ...OCTET, "X-Metadata-Other": "v" })).body?.cancel();
      assert.deepEqual(await readMetadata(target), { other: "v" });
      await (await post({ path: target }, "m3", OCTET)).body?.cancel();
      assert.equal(await readMetadata(target), undefined);

      // multipart: every file gets the same metadata
      const a = join(dir.path, "meta-a.txt");
      const b = join(dir.path, "meta-b.txt");
      const { body, contentType } = multipartBody([
        { name: "file", filename: a, data: "a" },
        { name: "file", filename: b, data: "b" },
      ]);
      const mr = await jsonOf(await post({}, body, { "content-type": contentType, "X-Metadata-K": "same" }));
      assert.deepEqual(
        (mr.body as { metadata: unknown }[]).map((e) => e.metadata),
        [{ k: "same" }, { k: "same" }],
      );
    });

    test("invalid metadata → 400 before anything is written", async () => {
      const target = join(dir.path, "badmeta.txt");
      for (const headers of [{ "X-Metadata-Tab": "a\tb" }, { "X-Metadata-Big": "x".repeat(4100) }, { [`X-Metadata-${"k".repeat(247)}`]: "v" }]) {
        const r = await jsonOf(await post({ path: target }, "x", { ...OCTET, ...headers }));
        assert.equal(r.status, 400);
        assert.match((r.body as { message: string }).message, /metadata/);
      }
      assert.equal(existsSync(target), false);
    });

    test("repeated X-Metadata header: the first value wins", async () => {
      const target = join(dir.path, "first-wins.txt");
      const headers = new Headers(OCTET);
      headers.append("X-Metadata-Dup", "first");
      headers.append("X-Metadata-Dup", "second");
      // fetch joins repeated headers into one "first, second" line; send two lines on a raw socket.
      const raw = `POST ${q({ path: target })} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nX-Metadata-Dup: first\r\nX-Metadata-Dup: second\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`;
      const res = await rawExchange(envd, raw);
      assert.match(res, /^HTTP\/1\.1 200/);
      assert.deepEqual(await readMetadata(target), { dup: "first" });
    });

    test("an upload aborted half-way leaves the old file (or none) and no temporary file", async () => {
      const sub = join(dir.path, "aborted");
      mkdirSync(sub);
      const existing = join(sub, "existing.bin");
      writeFileSync(existing, "old");
      const fresh = join(sub, "fresh.bin");
      const half = randomBytes(1 << 20);
      const { body, contentType } = multipartBody([{ name: "file", filename: fresh, data: Buffer.alloc(4 << 20, 1) }]);
      const heads = [
        // octet-stream with a declared length, cut after 1 MiB of 8
        [`POST ${q({ path: existing })} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${8 << 20}\r\n\r\n`, half],
        [`POST ${q({ path: fresh })} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${8 << 20}\r\n\r\n`, half],
        // chunked, cut inside a chunk
        [`POST ${q({ path: existing })} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n`, Buffer.concat([Buffer.from(`${(2 << 20).toString(16)}\r\n`), half])],
        // multipart, cut inside the file part
        [`POST /files HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`, body.subarray(0, 1 << 20)],
      ] as const;
      for (const [head, prefix] of heads) {
        const cut = await partialRequest(envd, head, prefix);
        // The upload is under way (its temporary file exists) when the client vanishes.
        await eventually(() => debris(sub).length === 1, `a temporary file in ${sub}`);
        await cut();
        await eventually(() => debris(sub).length === 0, `no temporary file left in ${sub}`);
        assert.equal(readFileSync(existing, "utf8"), "old");
        assert.equal(existsSync(fresh), false);
      }
      // The daemon is fine afterwards.
      const ok = await post({ path: fresh }, "whole", OCTET);
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
      assert.equal(readFileSync(fresh, "utf8"), "whole");
    });

    test("a genuinely full disk → 507 JSON; the old file survives and no debris is left", async () => {
      using disk = mountTmpfs("1m");
      const target = join(disk.path, "sub", "f.bin");
      mkdirSync(join(disk.path, "sub"));
      writeFileSync(target, "previous");
      const big = randomBytes(3 << 20);

      const raw = await jsonOf(await post({ path: target }, big, OCTET));
      assert.equal(raw.status, 507);
      assert.equal(raw.contentType, "application/json; charset=utf-8");
      assert.deepEqual(raw.body, { code: 507, message: `attempted to write ${big.length} bytes: not enough disk space available` });
      assert.equal(readFileSync(target, "utf8"), "previous");
      assert.deepEqual(debris(join(disk.path, "sub")), []);

      const { body, contentType } = multipartBody([
        { name: "file", filename: join(disk.path, "small.txt"), data: "fits" },
        { name: "file", filename: target, data: big },
      ]);
      const mp = await jsonOf(await post({}, body, { "content-type": contentType }));
      assert.equal(mp.status, 507);
      assert.match((mp.body as { message: string }).message, /not enough disk space available/);
      assert.equal(readFileSync(join(disk.path, "small.txt"), "utf8"), "fits", "parts before the failure stay written");
      assert.equal(readFileSync(target, "utf8"), "previous");
      assert.deepEqual(debris(disk.path), []);
      assert.deepEqual(debris(join(disk.path, "sub")), []);

      const gz = await jsonOf(await post({ path: target }, gzipSync(big), { ...OCTET, "content-encoding": "gzip" }));
      assert.equal(gz.status, 507);
      assert.equal(readFileSync(target, "utf8"), "previous");

      // Space is back once the failed upload is gone: a small upload succeeds.
      const after = await post({ path: target }, "small again", OCTET);
      assert.equal(after.status, 200);
      await after.body?.cancel();
      assert.equal(readFileSync(target, "utf8"), "small again");
    });

    test("the connection stays usable after an upload: an epilogue after the last boundary, then a GET on the same socket", async () => {
      const target = join(dir.path, "keepalive.txt");
      const { body, contentType } = multipartBody([{ name: "file", filename: target, data: "kept alive" }]);
      // Unread trailing bytes (legal multipart epilogue), larger than any internal buffer.
      const withEpilogue = Buffer.concat([body, Buffer.alloc(2 << 20, 0x61)]);
      const head = `POST /files HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\nContent-Length: ${withEpilogue.length}\r\n\r\n`;
      const get = `GET ${q({ path: target })} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n`;
      const net = await import("node:net");
      const socket = net.connect(envd.port, "127.0.0.1");
      let received = "";
      socket.on("data", (d: Buffer) => {
        received += d.toString("latin1");
      });
      const ended = new Promise<void>((resolve) => socket.once("end", () => resolve()));
      socket.write(Buffer.concat([Buffer.from(head), withEpilogue]));
      // Only once the upload has been answered does the GET go out (no pipelining).
      await eventually(() => /^HTTP\/1\.1 200[\s\S]*\r\n\r\n\[.*\]$/.test(received), "the upload's response");
      socket.write(get);
      await ended;
      const responses = received.split(/(?=HTTP\/1\.1 )/);
      assert.equal(responses.length, 2, received.slice(0, 500));
      assert.match(responses[1] as string, /^HTTP\/1\.1 200[\s\S]*\r\n\r\nkept alive$/);
    });

    test("over h2c (HTTP/2 prior knowledge): a 16 MiB upload and its download", async () => {
      const http2 = await import("node:http2");
      const target = join(dir.path, "h2.bin");
      const data = randomBytes(16 << 20);
      const session = http2.connect(envd.url);
      try {
        const exchange = (headers: Record<string, string>, body?: Buffer) =>
          new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
            const req = session.request(headers);
            const chunks: Buffer[] = [];
            let status = 0;
            req.on("response", (h) => {
              status = Number(h[":status"]);
            });
            req.on("data", (c: Buffer) => chunks.push(c));
            req.on("end", () => resolve({ status, body: Buffer.concat(chunks) }));
            req.on("error", reject);
            req.end(body);
          });
        const up = await exchange({ ":method": "POST", ":path": q({ path: target }), "content-type": "application/octet-stream" }, data);
        assert.equal(up.status, 200);
        assert.deepEqual(JSON.parse(up.body.toString()), [{ path: target, name: "h2.bin", type: "file" }]);
        const down = await exchange({ ":path": q({ path: target }), "accept-encoding": "identity" });
        assert.equal(down.status, 200);
        assert.equal(sha256(down.body), sha256(data));
      } finally {
        session.close();
      }
    });

    test("a 64 MiB streamed (chunked) upload arrives byte-exact", async () => {
      const target = join(dir.path, "stream.bin");
      const chunk = randomBytes(1 << 20);
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 64) return controller.close();
          sent++;
          controller.enqueue(chunk);
        },
      });
      const res = await envd.fetch(q({ path: target }), { method: "POST", body: stream, headers: OCTET, duplex: "half" } as RequestInit);
      assert.equal(res.status, 200);
      await res.body?.cancel();
      assert.equal(statSync(target).size, 64 << 20);
      assert.equal(sha256(readFileSync(target)), sha256(Buffer.concat(Array(64).fill(chunk))));
    });
  });
}

/** One request on a raw socket (Connection: close); resolves with the whole response text. */
async function rawExchange(envd: Daemon, request: string): Promise<string> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const socket = net.connect(envd.port, "127.0.0.1", () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString()));
    socket.on("error", reject);
  });
}
