/**
 * The generated table answers what mime-types does, for every extension mime-types knows, in any
 * case, and application/octet-stream where it has no answer.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { extname } from "node:path";
import { test } from "node:test";
import { contentTypeOf, DEFAULT_CONTENT_TYPE } from "./content-type.ts";

const mime = createRequire(import.meta.url)("mime-types") as typeof import("mime-types");

test("every extension mime-types knows gets mime-types' Content-Type, whatever its case", () => {
  const extensions = Object.keys(mime.types);
  assert.ok(extensions.length > 1000, `mime-types knows ${extensions.length} extensions`);
  for (const ext of extensions) {
    const want = mime.contentType(`.${ext}`) || DEFAULT_CONTENT_TYPE;
    assert.equal(contentTypeOf(`/home/user/file.${ext}`), want, ext);
    assert.equal(contentTypeOf(`file.${ext.toUpperCase()}`), want, ext.toUpperCase());
  }
});

test("examples, and names without a known extension", () => {
  assert.equal(contentTypeOf("notes.txt"), "text/plain; charset=utf-8");
  assert.equal(contentTypeOf("data.JSON"), "application/json; charset=utf-8");
  assert.equal(contentTypeOf("photo.jpeg"), "image/jpeg");
  assert.equal(contentTypeOf("a/b.tar.gz"), "application/gzip");
  for (const path of ["Makefile", ".bashrc", "dir.d/file", "trailing.", "x.unknown-extension", ""]) {
    assert.equal(contentTypeOf(path), DEFAULT_CONTENT_TYPE, path);
    // What the daemon answered before, with mime-types itself.
    const ext = extname(path);
    assert.equal((ext && mime.contentType(ext)) || DEFAULT_CONTENT_TYPE, DEFAULT_CONTENT_TYPE, `mime-types agrees on ${path}`);
  }
});
