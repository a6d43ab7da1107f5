import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pinHost, writeHostEntry } from "./hosts-file.ts";

const NAME = "events.e2b.local";

test("pinHost adds the name, keeps other lines, and replaces an older address", () => {
  const base = "127.0.0.1\tlocalhost\n# comment\n::1\tlocalhost ip6-localhost\n";
  const once = pinHost(base, NAME, "10.0.0.1");
  assert.equal(once, `${base}10.0.0.1\t${NAME}\n`);
  assert.equal(pinHost(once as string, NAME, "10.0.0.1"), undefined);
  assert.equal(pinHost(once as string, NAME, "10.0.0.2"), `${base}10.0.0.2\t${NAME}\n`);
  // The name on a shared line is taken off that line only.
  assert.equal(pinHost(`10.0.0.9 other ${NAME}\n`, NAME, "10.0.0.1"), `10.0.0.9\tother\n10.0.0.1\t${NAME}\n`);
  // IPv6 entries leave the IPv4 mapping alone.
  assert.equal(pinHost(`10.0.0.1\t${NAME}\n`, NAME, "fd00::1"), `10.0.0.1\t${NAME}\nfd00::1\t${NAME}\n`);
  // A file without a final newline, and an empty one.
  assert.equal(pinHost("127.0.0.1 localhost", NAME, "10.0.0.1"), `127.0.0.1 localhost\n10.0.0.1\t${NAME}\n`);
  assert.equal(pinHost("", NAME, "10.0.0.1"), `10.0.0.1\t${NAME}\n`);
});

test("writeHostEntry rewrites the file only when needed", () => {
  const dir = mkdtempSync(join(tmpdir(), "hosts-"));
  const path = join(dir, "hosts");
  writeFileSync(path, "127.0.0.1 localhost\n");
  assert.equal(writeHostEntry(path, NAME, "10.1.2.3"), true);
  assert.equal(writeHostEntry(path, NAME, "10.1.2.3"), false);
  assert.equal(readFileSync(path, "utf8"), `127.0.0.1 localhost\n10.1.2.3\t${NAME}\n`);
});
