import assert from "node:assert/strict";
import { test } from "node:test";
import { isIdentityRefused, negotiateEncoding } from "./accept-encoding.ts";

const cases: [string | undefined, "identity" | "gzip" | null][] = [
  [undefined, "identity"],
  ["", "identity"],
  ["gzip", "gzip"],
  ["GZIP", "gzip"],
  ["gzip, deflate, br", "gzip"],
  ["br", "identity"],
  ["identity", "identity"],
  ["identity;q=0", null],
  ["identity;q=0, gzip", "gzip"],
  ["gzip;q=0.5, identity;q=0.8", "identity"],
  ["gzip;q=0.9, identity;q=0.5", "gzip"],
  ["gzip;Q=0", "identity"],
  ["*", "identity"],
  ["*;q=0", null],
  ["*;q=0, identity;q=0.1", "identity"],
  ["*;q=0, gzip", "gzip"],
  ["identity;q=0, *", "gzip"],
  ["identity;q=0, br", null],
  ["gzip;q=0, identity;q=0", null],
  ["x-gzip", "gzip"],
];

for (const [header, expected] of cases) {
  test(`Accept-Encoding ${JSON.stringify(header)} → ${expected}`, () => {
    assert.equal(negotiateEncoding(header), expected);
  });
}

test("isIdentityRefused", () => {
  assert.equal(isIdentityRefused(undefined), false);
  assert.equal(isIdentityRefused("gzip"), false);
  assert.equal(isIdentityRefused("identity;q=0, gzip"), true);
  assert.equal(isIdentityRefused("*;q=0, gzip"), true);
  assert.equal(isIdentityRefused("*;q=0, identity;q=0.5"), false);
});
