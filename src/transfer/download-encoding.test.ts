import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { chooseGzip, GZIP_LEVEL, gzippedSize, gzipWish, hasCompressedExtension, OFFERED_MAX_BYTES, SAMPLE_BYTES } from "./download-encoding.ts";

const text = (n: number) => Buffer.from("the quick brown fox jumps over the lazy dog\n".repeat(Math.ceil(n / 44))).subarray(0, n);

/** A file of `data` (or of `size` bytes starting with `data`), counting how often its start is read. */
function file(path: string, data: Buffer, size = data.length) {
  const f = {
    path,
    size,
    reads: 0,
    readStart: async (bytes: number) => {
      f.reads++;
      return data.subarray(0, bytes);
    },
  };
  return f;
}

describe("gzipWish", () => {
  for (const [header, wish] of [
    ["gzip", "explicit"],
    ["GZIP", "explicit"],
    ["x-gzip", "explicit"],
    ["gzip, identity;q=0.5", "explicit"],
    ["gzip;q=1, deflate;q=0", "explicit"],
    ["gzip, deflate", "offered"],
    ["gzip, deflate, br, zstd", "offered"],
    ["br, gzip", "offered"],
    ["gzip, *", "offered"],
    ["gzip, identity;q=0", "required"],
    ["gzip, *;q=0", "required"],
    ["deflate, gzip, identity;q=0", "required"],
  ] as const) {
    test(`${JSON.stringify(header)} → ${wish}`, () => assert.equal(gzipWish(header), wish));
  }
});

describe("chooseGzip", () => {
  test("explicit gzip of text is honoured", async () => {
    assert.equal(await chooseGzip("gzip", file("/a.txt", text(100_000))), "gzip");
  });

  test("explicit gzip of random data is not: it would not get smaller", async () => {
    assert.equal(await chooseGzip("gzip", file("/a.bin", randomBytes(100_000))), "identity");
  });

  test("explicit gzip of a large compressible file is honoured (the client asked)", async () => {
    assert.equal(await chooseGzip("gzip", file("/big.log", text(SAMPLE_BYTES), 1 << 30)), "gzip");
  });

  test("a small file is never sent larger than it is", async () => {
    for (const data of [Buffer.from("hi"), Buffer.from("hello\n"), randomBytes(300), text(30)]) {
      const choice = await chooseGzip("gzip", file("/small", data));
      if (choice === "gzip") assert.ok(gzipSync(data, { level: GZIP_LEVEL }).length < data.length, `${data.length} bytes`);
    }
    assert.equal(await chooseGzip("gzip", file("/hi", Buffer.from("hi"))), "identity");
  });

  test("an empty file goes as identity unless identity is refused", async () => {
    assert.equal(await chooseGzip("gzip", file("/empty", Buffer.alloc(0))), "identity");
    assert.equal(await chooseGzip("gzip, deflate", file("/empty", Buffer.alloc(0))), "identity");
    assert.equal(await chooseGzip("gzip, identity;q=0", file("/empty", Buffer.alloc(0))), "gzip");
  });

  test("fetch's default offer gzips small text, not large files, not random data", async () => {
    assert.equal(await chooseGzip("gzip, deflate", file("/a.json", text(200_000))), "gzip");
    const big = file("/big.log", text(SAMPLE_BYTES), OFFERED_MAX_BYTES + 1);
    assert.equal(await chooseGzip("gzip, deflate", big), "identity");
    assert.equal(big.reads, 0, "a large file is not even sampled");
    assert.equal(await chooseGzip("gzip, deflate", file("/x", randomBytes(200_000))), "identity");
  });

  test("offered needs at least 10 % saved", async () => {
    // Mostly random, a little text: compresses by a few per cent only.
    const data = Buffer.concat([randomBytes(60_000), text(5_000)]);
    assert.ok((await gzippedSize(data)) < data.length);
    assert.equal(await chooseGzip("gzip, deflate", file("/mixed", data)), "identity");
    assert.equal(await chooseGzip("gzip", file("/mixed", data)), "gzip");
  });

  test("compressed formats are not sampled; required gzip still gzips them", async () => {
    for (const p of ["/a.tar.gz", "/b.ZIP", "/photo.jpeg", "/v.mp4", "/x.zst"]) {
      const f = file(p, text(100_000));
      assert.equal(await chooseGzip("gzip", f), "identity", p);
      assert.equal(f.reads, 0);
    }
    assert.equal(await chooseGzip("gzip, identity;q=0", file("/a.gz", randomBytes(1000))), "gzip");
  });

  test("hasCompressedExtension looks at the last name only", () => {
    assert.equal(hasCompressedExtension("/dir.gz/file"), false);
    assert.equal(hasCompressedExtension("/dir/.gz"), false);
    assert.equal(hasCompressedExtension("/dir/a.Gz"), true);
    assert.equal(hasCompressedExtension("noext"), false);
  });
});
