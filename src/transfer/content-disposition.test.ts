import assert from "node:assert/strict";
import { test } from "node:test";
import { contentDisposition, encodeRfc5987 } from "./content-disposition.ts";

const LEGAL = /^[\x20-\x7e]*$/;

test("plain ASCII names are quoted", () => {
  assert.equal(contentDisposition("a.txt"), 'inline; filename="a.txt"');
  assert.equal(contentDisposition("my file (1).txt"), 'inline; filename="my file (1).txt"');
});

test("quotes and backslashes are escaped inside the quoted string", () => {
  assert.equal(contentDisposition('a"b\\c'), 'inline; filename="a\\"b\\\\c"');
});

test("non-ASCII names get an ASCII fallback and an RFC 5987 filename*", () => {
  assert.equal(contentDisposition("résumé.pdf"), "inline; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf");
  assert.equal(contentDisposition("日本.txt"), "inline; filename=\"__.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt");
  assert.equal(contentDisposition("😀"), "inline; filename=\"_\"; filename*=UTF-8''%F0%9F%98%80");
});

test("control characters never reach the header", () => {
  const v = contentDisposition("a\nb\r\u0000c\u007f");
  assert.match(v, LEGAL);
  assert.equal(v, "inline; filename=\"a_b__c_\"; filename*=UTF-8''a%0Ab%0D%00c%7F");
});

test("RFC 5987 encoding keeps attr-char and encodes everything else", () => {
  assert.equal(encodeRfc5987("Az09!#$&+-.^_`|~"), "Az09!#$&+-.^_`|~");
  assert.equal(encodeRfc5987("a b'()*%;,\"=é"), "a%20b%27%28%29%2A%25%3B%2C%22%3D%C3%A9");
});

test("any string, even with lone surrogates, gives a legal header value", () => {
  for (const name of ["\ud800", "x\udfffy", "\t", "a".repeat(300), "﻿bom"]) {
    assert.match(contentDisposition(name), LEGAL);
  }
});
