import assert from "node:assert/strict";
import { test } from "node:test";
import { compileExcludes, GlobError } from "./exclude-globs.ts";

test("a name pattern matches that name at any depth, with everything beneath it", () => {
  const ex = compileExcludes(["node_modules", ".git", "*.log", "cache-?", "[Bb]uild"]) as (rel: string) => boolean;
  for (const p of ["node_modules", "a/node_modules", "a/node_modules/b/c", ".git/objects", "x.log", "d/e.log", "cache-1", "Build", "build/x"]) {
    assert.equal(ex(p), true, p);
  }
  for (const p of ["", ".", "node_modules2", "src/modules", "x.log.txt", "cache-12", "rebuild", "gitx"]) assert.equal(ex(p), false, p);
});

test("a path pattern matches from the watched directory; ** spans directories", () => {
  const ex = compileExcludes(["build/out", "src/**/gen", "/tmp/", "docs/**"]) as (rel: string) => boolean;
  for (const p of ["build/out", "build/out/a/b", "src/gen", "src/a/b/gen", "src/a/gen/x.ts", "tmp", "tmp/z", "docs/a"]) assert.equal(ex(p), true, p);
  for (const p of ["a/build/out", "build", "build/outside", "src/generated", "lib/gen", "docs", "x/tmp"]) assert.equal(ex(p), false, p);
});

test("escapes, negated classes, and bad patterns", () => {
  const ex = compileExcludes(["\\*literal", "[!a]x"]) as (rel: string) => boolean;
  assert.equal(ex("*literal"), true);
  assert.equal(ex("aliteral"), false);
  assert.equal(ex("bx"), true);
  assert.equal(ex("ax"), false);
  assert.equal(compileExcludes([]), undefined);
  for (const bad of [[""], ["/"], ["[abc"], ["x\\"], ["a".repeat(1025)], Array.from({ length: 257 }, (_, i) => `p${i}`)]) {
    assert.throws(() => compileExcludes(bad), GlobError, JSON.stringify(bad).slice(0, 40));
  }
});
