import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { request as http1Request } from "node:http";
import { connect as http2Connect } from "node:http2";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { createUser, IDENTITY, jsonOf, rawGet, sha256, type TestUser, tempDir } from "./files-fixtures.ts";
import { type Daemon, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

const q = (params: Record<string, string>) => `/files?${new URLSearchParams(params)}`;

for (const runtime of RUNTIMES) {
  describe(`GET /files [${runtime}]`, { skip: !isRoot && "needs root (useradd)" }, () => {
    let envd: Daemon;
    let user: TestUser;
    let dir: { path: string } & Disposable;
    let file: string;
    const content = "hello, envd\n";

    before(async () => {
      envd = await startDaemon({ runtime });
      user = createUser();
      dir = tempDir();
      file = join(dir.path, "a.txt");
      writeFileSync(file, content);
      utimesSync(file, new Date("2026-01-02T03:04:05Z"), new Date("2026-01-02T03:04:05Z"));
    });
    after(async () => {
      await envd?.[Symbol.asyncDispose]();
      user?.[Symbol.dispose]();
      dir?.[Symbol.dispose]();
    });

    test("200 with the bytes, Content-Length, inline Content-Disposition, type, validators", async () => {
      const res = await envd.fetch(q({ path: file }), { headers: IDENTITY });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), content);
      assert.equal(res.headers.get("content-length"), String(content.length));
      assert.equal(res.headers.get("content-disposition"), 'inline; filename="a.txt"');
      assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
      assert.equal(res.headers.get("last-modified"), "Fri, 02 Jan 2026 03:04:05 GMT");
      assert.equal(res.headers.get("accept-ranges"), "bytes");
      assert.match(res.headers.get("etag") ?? "", /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
      assert.equal(res.headers.get("vary"), "Accept-Encoding");
    });

    test("Content-Type by extension, octet-stream when unknown", async () => {
      writeFileSync(join(dir.path, "x.json"), "{}");
      writeFileSync(join(dir.path, "noext"), "x");
      assert.equal((await envd.fetch(q({ path: join(dir.path, "x.json") }))).headers.get("content-type"), "application/json; charset=utf-8");
      assert.equal((await envd.fetch(q({ path: join(dir.path, "noext") }))).headers.get("content-type"), "application/octet-stream");
    });

    test("HEAD answers the headers without a body", async () => {
      const res = await envd.fetch(q({ path: file }), { method: "HEAD", headers: IDENTITY });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), String(content.length));
      assert.equal(await res.text(), "");
    });

    test("missing → 404 JSON; directory and empty path → 400; relative and ~ resolve against the user's home", async () => {
      const missing = await jsonOf(await envd.fetch(q({ path: join(dir.path, "nope") })));
      assert.deepEqual(missing.body, { code: 404, message: `path '${join(dir.path, "nope")}' does not exist` });
      assert.equal(missing.contentType, "application/json; charset=utf-8");

      const isDir = await jsonOf(await envd.fetch(q({ path: dir.path })));
      assert.deepEqual(isDir.body, { code: 400, message: `path '${dir.path}' is a directory` });
      const empty = await jsonOf(await envd.fetch(q({ username: user.name })));
      assert.deepEqual(empty.body, { code: 400, message: `path '${user.home}' is a directory` });

      writeFileSync(join(user.home, "rel.txt"), "relative");
      assert.equal(await (await envd.fetch(q({ path: "rel.txt", username: user.name }))).text(), "relative");
      assert.equal(await (await envd.fetch(q({ path: "~/rel.txt", username: user.name }))).text(), "relative");
      const other = await jsonOf(await envd.fetch(q({ path: "~root/x", username: user.name })));
      assert.equal(other.status, 400);
    });

    test("unknown username → 401", async () => {
      const r = await jsonOf(await envd.fetch(q({ path: file, username: "no-such-user-xyz" })));
      assert.equal(r.status, 401);
      assert.deepEqual(r.body, { code: 401, message: "error looking up user 'no-such-user-xyz': unknown user" });
    });

    test("Range: one range → 206, suffix → 206, past the end → 416, several → 200 in full", async () => {
      const two = await envd.fetch(q({ path: file }), { headers: { range: "bytes=0-1" } });
      assert.equal(two.status, 206);
      assert.equal(await two.text(), "he");
      assert.equal(two.headers.get("content-range"), `bytes 0-1/${content.length}`);
      assert.equal(two.headers.get("content-length"), "2");
      assert.equal(two.headers.get("content-encoding"), null);

      const tail = await envd.fetch(q({ path: file }), { headers: { range: "bytes=-5" } });
      assert.equal(tail.status, 206);
      assert.equal(await tail.text(), content.slice(-5));

      const open = await envd.fetch(q({ path: file }), { headers: { range: "bytes=7-" } });
      assert.equal(await open.text(), content.slice(7));

      const past = await envd.fetch(q({ path: file }), { headers: { range: `bytes=${content.length}-` } });
      assert.equal(past.status, 416);
      assert.equal(past.headers.get("content-range"), `bytes */${content.length}`);
      const body = (await past.json()) as { code: number; message: string };
      assert.equal(body.code, 416);

      const malformed = await envd.fetch(q({ path: file }), { headers: { range: "bytes=x-y" } });
      assert.equal(malformed.status, 416);
      await malformed.body?.cancel();

      const several = await envd.fetch(q({ path: file }), { headers: { range: "bytes=0-1,5-6" } });
      assert.equal(several.status, 200);
      assert.equal(await several.text(), content);

      const otherUnit = await envd.fetch(q({ path: file }), { headers: { range: "items=0-1" } });
      assert.equal(otherUnit.status, 200);
      await otherUnit.body?.cancel();
    });

    test("conditional requests: If-None-Match / If-Modified-Since → 304, If-Range decides the range, If-Match → 412", async () => {
      const first = await envd.fetch(q({ path: file }), { headers: IDENTITY });
      const etag = first.headers.get("etag") as string;
      const lastModified = first.headers.get("last-modified") as string;
      await first.body?.cancel();

      const inm = await envd.fetch(q({ path: file }), { headers: { "if-none-match": etag } });
      assert.equal(inm.status, 304);
      assert.equal(await inm.text(), "");
      assert.equal(inm.headers.get("etag"), etag);

      const ims = await envd.fetch(q({ path: file }), { headers: { "if-modified-since": lastModified } });
      assert.equal(ims.status, 304);
      const older = await envd.fetch(q({ path: file }), { headers: { "if-modified-since": "Thu, 01 Jan 2026 00:00:00 GMT" } });
      assert.equal(older.status, 200);
      assert.equal(await older.text(), content);

      const staleTag = await envd.fetch(q({ path: file }), { headers: { "if-none-match": '"stale"' } });
      assert.equal(staleTag.status, 200);
      await staleTag.body?.cancel();

      const ifRangeOk = await envd.fetch(q({ path: file }), { headers: { range: "bytes=0-1", "if-range": etag } });
      assert.equal(ifRangeOk.status, 206);
      await ifRangeOk.body?.cancel();
      const ifRangeStale = await envd.fetch(q({ path: file }), { headers: { range: "bytes=0-1", "if-range": '"stale"' } });
      assert.equal(ifRangeStale.status, 200);
      assert.equal(await ifRangeStale.text(), content);
      const ifRangeDate = await envd.fetch(q({ path: file }), { headers: { range: "bytes=0-1", "if-range": lastModified } });
      assert.equal(ifRangeDate.status, 206);
      await ifRangeDate.body?.cancel();

      const ifMatch = await jsonOf(await envd.fetch(q({ path: file }), { headers: { "if-match": '"stale"' } }));
      assert.equal(ifMatch.status, 412);
    });

    test("gzip when accepted (q-values), identity otherwise, 406 when nothing acceptable", async () => {
      // A file gzip shrinks (the rule, docs/compatibility.md "Download compression", sends tiny or
      // incompressible files as they are; tested below).
      const textFile = join(dir.path, "text.txt");
      const text = content.repeat(500);
      writeFileSync(textFile, text);
      const gz = await envd.fetch(q({ path: textFile }), { headers: { "accept-encoding": "gzip" } });
      assert.equal(gz.status, 200);
      assert.equal(gz.headers.get("content-encoding"), "gzip");
      assert.equal(gz.headers.get("content-length"), null);
      assert.equal(gz.headers.get("content-type"), "text/plain; charset=utf-8");
      // fetch decodes gzip itself; read the raw bytes too, to see a real gzip stream on the wire.
      assert.equal(await gz.text(), text);
      const raw = await rawGet(envd, q({ path: textFile }), { "accept-encoding": "gzip" });
      assert.equal(raw.headers["content-encoding"], "gzip");
      assert.equal(gunzipSync(raw.body).toString(), text);

      const preferIdentity = await envd.fetch(q({ path: file }), { headers: { "accept-encoding": "gzip;q=0.5, identity" } });
      assert.equal(preferIdentity.headers.get("content-encoding"), null);
      assert.equal(await preferIdentity.text(), content);

      const none = await jsonOf(await envd.fetch(q({ path: file }), { headers: { "accept-encoding": "identity;q=0" } }));
      assert.equal(none.status, 406);
      assert.deepEqual(none.body, { code: 406, message: "no acceptable encoding found, supported: [identity, gzip]" });

      // Range forces identity; when identity is refused that is 406.
      const rangeGzip = await envd.fetch(q({ path: file }), { headers: { "accept-encoding": "gzip", range: "bytes=0-1" } });
      assert.equal(rangeGzip.status, 206);
      assert.equal(rangeGzip.headers.get("content-encoding"), null);
      assert.equal(await rangeGzip.text(), "he");
      const rangeNoIdentity = await envd.fetch(q({ path: file }), { headers: { "accept-encoding": "gzip, identity;q=0", range: "bytes=0-1" } });
      assert.equal(rangeNoIdentity.status, 406);
      await rangeNoIdentity.body?.cancel();
    });

    test("gzip only when it pays: never larger than identity, not for data that does not shrink, not for large files merely offered it", async () => {
      // 12 bytes: gzipped they would be 32.
      const tiny = await rawGet(envd, q({ path: file }), { "accept-encoding": "gzip" });
      assert.equal(tiny.headers["content-encoding"], undefined);
      assert.equal(tiny.body.toString(), content);
      const random = join(dir.path, "random.bin");
      const noise = randomBytes(256 << 10);
      writeFileSync(random, noise);
      const r = await rawGet(envd, q({ path: random }), { "accept-encoding": "gzip" });
      assert.equal(r.headers["content-encoding"], undefined);
      assert.equal(r.headers["content-length"], String(noise.length));
      assert.ok(r.body.equals(noise));
      // Already compressed by its name: not even sampled.
      const archive = join(dir.path, "a.tar.gz");
      writeFileSync(archive, content.repeat(500));
      assert.equal((await rawGet(envd, q({ path: archive }), { "accept-encoding": "gzip" })).headers["content-encoding"], undefined);
      // fetch's own offer (gzip among others): small text yes, 9 MiB of text no; asked alone, yes.
      const small = join(dir.path, "small.log");
      writeFileSync(small, content.repeat(500));
      assert.equal((await rawGet(envd, q({ path: small }), { "accept-encoding": "gzip, deflate" })).headers["content-encoding"], "gzip");
      const large = join(dir.path, "large.log");
      writeFileSync(large, content.repeat(Math.ceil((9 << 20) / content.length)));
      const offered = await rawGet(envd, q({ path: large }), { "accept-encoding": "gzip, deflate, br" });
      assert.equal(offered.headers["content-encoding"], undefined);
      assert.equal(offered.body.length, statSync(large).size);
      const asked = await rawGet(envd, q({ path: large }), { "accept-encoding": "gzip" });
      assert.equal(asked.headers["content-encoding"], "gzip");
      assert.equal(gunzipSync(asked.body).length, statSync(large).size);
      // Identity refused: gzip whatever the data.
      const forced = await rawGet(envd, q({ path: random }), { "accept-encoding": "gzip, identity;q=0" });
      assert.equal(forced.headers["content-encoding"], "gzip");
      assert.ok(gunzipSync(forced.body).equals(noise));
    });

    test("Content-Disposition is a legal header for any file name", async () => {
      const names = ["résumé 日本.txt", 'quo"te\\back.txt', "new\nline.txt", "😀"];
      for (const name of names) {
        writeFileSync(join(dir.path, name), name);
        const res = await envd.fetch(q({ path: join(dir.path, name) }), { headers: IDENTITY });
        assert.equal(res.status, 200, name);
        assert.equal(await res.text(), name);
        const cd = res.headers.get("content-disposition") as string;
        assert.match(cd, /^inline; filename="/);
        assert.match(cd, /^[\x20-\x7e]*$/);
        const star = /filename\*=UTF-8''(.+)$/.exec(cd);
        if (/^[\x20-\x7e]*$/.test(name)) assert.equal(star, null);
        else assert.equal(decodeURIComponent(star?.[1] ?? ""), name);
      }
    });

    test("empty file → Content-Length 0; procfs file (stat size 0) → its whole content", async () => {
      const empty = join(dir.path, "empty");
      writeFileSync(empty, "");
      const res = await envd.fetch(q({ path: empty }), { headers: IDENTITY });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), "0");
      assert.equal(await res.text(), "");

      const proc = await envd.fetch(q({ path: "/proc/self/status" }), { headers: IDENTITY });
      assert.equal(proc.status, 200);
      const text = await proc.text();
      assert.match(text, /^Name:/);
      assert.match(text, /VmRSS:/);
    });

    test("a FIFO or a device is refused with 400 instead of hanging", async () => {
      const fifo = join(dir.path, "fifo");
      execFileSync("mkfifo", [fifo]);
      const r = await jsonOf(await envd.fetch(q({ path: fifo })));
      assert.deepEqual(r.body, { code: 400, message: `path '${fifo}' is not a regular file` });
      const dev = await jsonOf(await envd.fetch(q({ path: "/dev/zero" })));
      assert.equal(dev.status, 400);
    });

    test("a symlink is followed; an unreadable-for-the-user file is still served (envd runs as root, as Go)", async () => {
      const link = join(dir.path, "link");
      symlinkSync(file, link);
      assert.equal(await (await envd.fetch(q({ path: link }))).text(), content);
      const secret = join(dir.path, "secret");
      writeFileSync(secret, "s");
      chmodSync(secret, 0o600);
      assert.equal(await (await envd.fetch(q({ path: secret, username: user.name }))).text(), "s");
    });

    test("a 48 MiB file arrives byte-exact, identity and gzip", async () => {
      const big = join(dir.path, "big.bin");
      // Compressible at the start (so explicit gzip is honoured), random after.
      const data = Buffer.concat([Buffer.alloc(24 << 20, 7), randomBytes(24 << 20)]);
      writeFileSync(big, data);
      const res = await envd.fetch(q({ path: big }), { headers: IDENTITY });
      assert.equal(res.headers.get("content-length"), String(data.length));
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(data));
      const gz = await envd.fetch(q({ path: big }), { headers: { "accept-encoding": "gzip" } });
      assert.equal(gz.headers.get("content-encoding"), "gzip");
      assert.equal(sha256(Buffer.from(await gz.arrayBuffer())), sha256(data));
      const mid = await envd.fetch(q({ path: big }), { headers: { range: `bytes=${20 << 20}-${(28 << 20) - 1}` } });
      assert.equal(mid.status, 206);
      assert.equal(sha256(Buffer.from(await mid.arrayBuffer())), sha256(data.subarray(20 << 20, 28 << 20)));
    });

    test("slow readers over HTTP/1.1 and HTTP/2 get the exact bytes (the daemon reuses its read buffers)", async () => {
      const big = join(dir.path, "slow.bin");
      const data = randomBytes(12 << 20);
      writeFileSync(big, data);
      const port = Number(new URL(envd.url).port);
      const path = q({ path: big, username: user.name });
      const range = { start: (3 << 20) + 7, end: (9 << 20) - 3 };
      /** Reads in bursts of about 1 MiB with a 3 ms pause after each, so the daemon's writes queue up. */
      const slowly = (body: NodeJS.ReadableStream & { pause(): void; resume(): void }) =>
        new Promise<Buffer>((resolve, reject) => {
          const parts: Buffer[] = [];
          let burst = 0;
          body.on("data", (chunk: Buffer) => {
            parts.push(chunk);
            burst += chunk.length;
            if (burst < 1 << 20) return;
            burst = 0;
            body.pause();
            setTimeout(() => body.resume(), 3);
          });
          body.once("end", () => resolve(Buffer.concat(parts)));
          body.once("error", reject);
        });
      const viaHttp1 = (headers: Record<string, string>) =>
        new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
          const req = http1Request({ host: "127.0.0.1", port, path, headers: { ...IDENTITY, ...headers } }, (res) =>
            slowly(res).then((body) => resolve({ status: res.statusCode ?? 0, body }), reject),
          );
          req.once("error", reject);
          req.end();
        });
      const session = http2Connect(`http://127.0.0.1:${port}`);
      try {
        const viaHttp2 = (headers: Record<string, string>) =>
          new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
            const stream = session.request({ ":path": path, ...IDENTITY, ...headers });
            let status = 0;
            stream.once("response", (h) => {
              status = Number(h[":status"]);
            });
            slowly(stream).then((body) => resolve({ status, body }), reject);
            stream.once("error", reject);
          });
        for (const [name, get] of [
          ["HTTP/1.1", viaHttp1],
          ["HTTP/2", viaHttp2],
        ] as const) {
          const whole = await get({});
          assert.equal(whole.status, 200, name);
          assert.equal(sha256(whole.body), sha256(data), `${name}: whole file`);
          const part = await get({ range: `bytes=${range.start}-${range.end}` });
          assert.equal(part.status, 206, name);
          assert.equal(sha256(part.body), sha256(data.subarray(range.start, range.end + 1)), `${name}: range`);
        }
      } finally {
        session.close();
      }
    });

    test("a file that shrinks during the download: the connection is cut (HTTP/1.1 and HTTP/2), not left waiting for the promised length", async () => {
      const port = Number(new URL(envd.url).port);
      const size = 64 << 20;
      /** Takes the first chunk, shrinks the file to 1 MiB, then reads on: how many bytes came, and whether the body was complete. */
      const shrinking = (path: string, body: NodeJS.ReadableStream & { pause(): void; resume(): void }, complete: () => boolean) =>
        new Promise<{ bytes: number; complete: boolean }>((resolve) => {
          let bytes = 0;
          let shrunk = false;
          body.on("data", (chunk: Buffer) => {
            bytes += chunk.length;
            if (shrunk) return;
            shrunk = true;
            truncateSync(path, 1 << 20);
          });
          body.once("error", () => {});
          body.once("close", () => resolve({ bytes, complete: complete() }));
        });
      for (const protocol of ["HTTP/1.1", "HTTP/2"] as const) {
        const path = join(dir.path, `shrinking-${protocol === "HTTP/2" ? 2 : 1}.bin`);
        writeFileSync(path, Buffer.alloc(size, 3));
        const query = q({ path, username: user.name });
        let got: { bytes: number; complete: boolean };
        if (protocol === "HTTP/1.1") {
          got = await new Promise((resolve, reject) => {
            const req = http1Request({ host: "127.0.0.1", port, path: query, headers: IDENTITY }, (res) => {
              assert.equal(res.headers["content-length"], String(size));
              shrinking(path, res, () => res.complete).then(resolve, reject);
            });
            req.once("error", () => {});
            // Without the cut, the client would wait for the promised length for ever.
            req.setTimeout(10_000, () => reject(new Error("HTTP/1.1: the short body was neither ended nor cut within 10 s")));
            req.end();
          });
        } else {
          const session = http2Connect(`http://127.0.0.1:${port}`);
          session.on("error", () => {});
          try {
            const stream = session.request({ ":path": query, ...IDENTITY });
            stream.setTimeout(10_000, () => stream.destroy(new Error("HTTP/2: the short body was neither ended nor cut within 10 s")));
            got = await shrinking(path, stream, () => stream.rstCode === 0 && stream.readableEnded);
          } finally {
            session.close();
          }
        }
        assert.ok(got.bytes < size, `${protocol}: ${got.bytes} bytes of ${size}`);
        assert.equal(got.complete, false, `${protocol}: the client can tell the body is short`);
      }
      const again = await envd.fetch(q({ path: file }), { headers: IDENTITY });
      assert.equal(await again.text(), content);
    });

    test("a client that leaves mid-download costs nothing: the daemon serves the next request", async () => {
      const big = join(dir.path, "big2.bin");
      writeFileSync(big, Buffer.alloc(32 << 20, 1));
      const controller = new AbortController();
      const res = await envd.fetch(q({ path: big }), { headers: IDENTITY, signal: controller.signal });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      controller.abort();
      await reader.read().catch(() => {});
      const again = await envd.fetch(q({ path: file }), { headers: IDENTITY });
      assert.equal(await again.text(), content);
      assert.equal(statSync(big).size, 32 << 20);
    });
  });
}
