import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { EnvdError, fromNodeError, httpStatusOf } from "../errors.ts";
import { loadXattrCalls } from "../sys/libc.ts";
import { errnoError, readMetadata, validateMetadata, writeMetadata } from "./xattr.ts";

// Raw attributes set and read behind xattr.ts's back, straight through libc.
const z = (s: string) => Buffer.from(`${s}\0`);
function setAttribute(path: string, name: string, value: string | Buffer): void {
  const x = loadXattrCalls();
  assert.ok(x, "libc FFI is available");
  const v = Buffer.from(value);
  assert.equal(x.setxattr(z(path), z(name), v, v.length, 0), 0, `setxattr errno ${x.errno()}`);
}
function getAttribute(path: string, name: string): Buffer {
  const x = loadXattrCalls();
  assert.ok(x, "libc FFI is available");
  const buf = Buffer.alloc(4096);
  const n = x.getxattr(z(path), z(name), buf, buf.length);
  assert.ok(n >= 0, `getxattr errno ${x.errno()}`);
  return buf.subarray(0, n);
}

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
    setAttribute(f, "user.other", "keep");
    assert.equal(await writeMetadata(f, { a: "1", b: "2" }), true);
    assert.deepEqual(await readMetadata(f), { a: "1", b: "2" });
    await writeMetadata(f, { b: "3", c: "4" });
    assert.deepEqual(await readMetadata(f), { b: "3", c: "4" });
    await writeMetadata(f, {});
    assert.equal(await readMetadata(f), undefined);
    assert.equal(String(getAttribute(f, "user.other")), "keep");
  });

  test("values that are not UTF-8 are skipped", async () => {
    const f = join(dir, "binary");
    writeFileSync(f, "x");
    setAttribute(f, "user.e2b.bad", Buffer.from([0xff, 0xfe]));
    setAttribute(f, "user.e2b.good", "ok");
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

test("errnoError names the errno like node:fs errors do", () => {
  const e = errnoError(28, "setxattr", "/x");
  assert.equal(e.code, "ENOSPC");
  assert.equal(e.errno, -28);
  assert.equal(e.syscall, "setxattr");
  assert.equal(httpStatusOf(fromNodeError(e, "write")), 507);
  assert.equal(errnoError(100_000, "getxattr", "/x").code, undefined);
});

describe("through libc", () => {
  // ext4 keeps all of a file's attributes in one 4 KiB block; tmpfs takes more.
  const shm = existsSync("/dev/shm") ? mkdtempSync("/dev/shm/envd-xattr-") : undefined;
  after(() => shm && rmSync(shm, { recursive: true, force: true }));
  test("names and values longer than the first 4 KiB buffer are read whole", { skip: shm ? false : "no /dev/shm" }, async () => {
    const f = join(shm as string, "big");
    writeFileSync(f, "x");
    // Other attributes (any user.* name) can make the list longer than our metadata ever is.
    for (let i = 0; i < 40; i++) setAttribute(f, `user.other-${"n".repeat(200)}-${i}`, "v");
    const long = "y".repeat(3000);
    setAttribute(f, "user.e2b.long", long);
    setAttribute(f, "user.e2b.big", "z".repeat(6000));
    assert.deepEqual(await readMetadata(f), { big: "z".repeat(6000), long });
  });

  test("a path with a NUL byte is refused instead of cut short", async () => {
    await assert.rejects(readMetadata(`${dir}\0/x`), (err: NodeJS.ErrnoException) => err.code === "ERR_INVALID_ARG_VALUE");
    await assert.rejects(writeMetadata(`${dir}\0/x`, { a: "b" }), (err: NodeJS.ErrnoException) => err.code === "ERR_INVALID_ARG_VALUE");
  });

  test("a symlink is followed", async () => {
    const f = join(dir, "target");
    writeFileSync(f, "x");
    symlinkSync(f, join(dir, "link"));
    await writeMetadata(join(dir, "link"), { via: "link" });
    assert.deepEqual(await readMetadata(f), { via: "link" });
  });
});
