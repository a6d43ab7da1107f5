import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { getAttribute, setAttribute } from "@napi-rs/xattr";
import { EnvdError, fromNodeError, httpStatusOf } from "../errors.ts";
import { readMetadata, validateMetadata, writeMetadata, xattrError } from "./xattr.ts";

const dir = mkdtempSync(join(tmpdir(), "envd-xattr-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("validateMetadata", () => {
  test("accepts printable ASCII within the limits", () => {
    validateMetadata({});
    validateMetadata({ author: "mish", "a b": "~ !" });
    validateMetadata({ ["k".repeat(246)]: "" });
  });

  for (const [name, metadata] of [
    ["empty key", { "": "v" }],
    ["tab in a value", { k: "a\tb" }],
    ["newline in a value", { k: "a\nb" }],
    ["non-ASCII value", { k: "é" }],
    ["non-ASCII key", { "é": "v" }],
    ["key of 247 bytes", { ["k".repeat(247)]: "v" }],
    ["more than 4096 bytes in total", { a: "x".repeat(2040), b: "x".repeat(2040) }],
  ] as const) {
    test(`refuses ${name} with InvalidArgument (HTTP 400)`, () => {
      assert.throws(
        () => validateMetadata(metadata),
        (err: unknown) => err instanceof EnvdError && httpStatusOf(err) === 400 && /metadata/.test(err.rawMessage),
      );
    });
  }

  test("the total counts the 9-byte prefix once per key", () => {
    // 2 × (9 + 1 + 2038) = 4096: exactly at the limit.
    validateMetadata({ a: "x".repeat(2038), b: "x".repeat(2038) });
    assert.throws(() => validateMetadata({ a: "x".repeat(2039), b: "x".repeat(2038) }));
  });
});

describe("readMetadata / writeMetadata", () => {
  test("a file without metadata reads as undefined", async () => {
    const f = join(dir, "plain");
    writeFileSync(f, "x");
    assert.equal(await readMetadata(f), undefined);
  });

  test("write replaces the whole user.e2b.* set and leaves other user.* attributes alone", async () => {
    const f = join(dir, "replace");
    writeFileSync(f, "x");
    await setAttribute(f, "user.other", "keep");
    assert.equal(await writeMetadata(f, { a: "1", b: "2" }), true);
    assert.deepEqual(await readMetadata(f), { a: "1", b: "2" });
    await writeMetadata(f, { b: "3", c: "4" });
    assert.deepEqual(await readMetadata(f), { b: "3", c: "4" });
    await writeMetadata(f, {});
    assert.equal(await readMetadata(f), undefined);
    assert.equal(String(await getAttribute(f, "user.other")), "keep");
  });

  test("values that are not UTF-8 are skipped", async () => {
    const f = join(dir, "binary");
    writeFileSync(f, "x");
    await setAttribute(f, "user.e2b.bad", Buffer.from([0xff, 0xfe]));
    await setAttribute(f, "user.e2b.good", "ok");
    assert.deepEqual(await readMetadata(f), { good: "ok" });
  });

  test("a filesystem without user xattrs reads as undefined and writes as false", async () => {
    assert.equal(await readMetadata("/proc/self/status"), undefined);
    assert.equal(await writeMetadata("/proc/self/status", { a: "b" }), false);
  });

  test("a missing file throws an ENOENT error that maps to NotFound", async () => {
    await assert.rejects(readMetadata(join(dir, "missing")), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, "ENOENT");
      assert.equal(httpStatusOf(fromNodeError(err, "read")), 404);
      return true;
    });
  });

  test("write validates before touching the file", async () => {
    const f = join(dir, "invalid");
    writeFileSync(f, "x");
    await writeMetadata(f, { keep: "1" });
    await assert.rejects(writeMetadata(f, { k: "\t" }), EnvdError);
    assert.deepEqual(await readMetadata(f), { keep: "1" });
  });
});

test("xattrError recovers the errno from the addon's message", () => {
  const e = xattrError(new Error("No space left on device (os error 28)"), "setxattr", "/x");
  assert.equal(e.code, "ENOSPC");
  assert.equal(e.errno, -28);
  assert.equal(httpStatusOf(fromNodeError(e, "write")), 507);
  assert.equal(xattrError(new Error("weird"), "getxattr", "/x").code, undefined);
});
