import assert from "node:assert/strict";
import { test } from "node:test";
import { resolvePath } from "./paths.ts";

test("resolvePath follows envd's rules", () => {
  assert.equal(resolvePath("", "/home/u", "/app"), "/app");
  assert.equal(resolvePath("", "/home/u", undefined), "/home/u");
  assert.equal(resolvePath("~", "/home/u", "/app"), "/home/u");
  assert.equal(resolvePath("~/a/../b", "/home/u", undefined), "/home/u/b");
  assert.equal(resolvePath("/x/../y", "/home/u", undefined), "/x/../y");
  assert.equal(resolvePath("rel/./f", "/home/u", "/app"), "/home/u/rel/f");
  assert.equal(resolvePath("../../etc", "/home/u", undefined), "/etc");
  assert.throws(() => resolvePath("~root/x", "/home/u", undefined), /cannot expand user-specific home dir/);
  assert.throws(() => resolvePath("a\0b", "/home/u", undefined), /NUL/);
});
