import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decideRange, evaluatePreconditions, ifRangeAllows, makeEtag, parseHttpDate } from "./preconditions.ts";

const mtimeMs = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const v = { etag: makeEtag(12n, 100n, BigInt(mtimeMs) * 1_000_000n), mtimeMs };
const at = (ms: number) => new Date(ms).toUTCString();

describe("evaluatePreconditions", () => {
  test("nothing conditional → proceed", () => {
    assert.equal(evaluatePreconditions({}, v), undefined);
  });

  test("If-None-Match: our ETag, a list holding it, weak form or * → 304; other tags → proceed", () => {
    assert.equal(evaluatePreconditions({ ifNoneMatch: v.etag }, v), 304);
    assert.equal(evaluatePreconditions({ ifNoneMatch: `"x", ${v.etag}` }, v), 304);
    assert.equal(evaluatePreconditions({ ifNoneMatch: `W/${v.etag}` }, v), 304);
    assert.equal(evaluatePreconditions({ ifNoneMatch: "*" }, v), 304);
    assert.equal(evaluatePreconditions({ ifNoneMatch: '"other"' }, v), undefined);
  });

  test("If-Modified-Since at or after the mtime (second resolution) → 304; before → proceed", () => {
    assert.equal(evaluatePreconditions({ ifModifiedSince: at(mtimeMs) }, v), 304);
    assert.equal(evaluatePreconditions({ ifModifiedSince: at(mtimeMs + 60_000) }, v), 304);
    assert.equal(evaluatePreconditions({ ifModifiedSince: at(mtimeMs - 1000) }, v), undefined);
    assert.equal(evaluatePreconditions({ ifModifiedSince: "not a date" }, v), undefined);
  });

  test("If-None-Match takes precedence over If-Modified-Since", () => {
    assert.equal(evaluatePreconditions({ ifNoneMatch: '"other"', ifModifiedSince: at(mtimeMs + 60_000) }, v), undefined);
  });

  test("If-Match needs a strong match; If-Unmodified-Since before the mtime → 412", () => {
    assert.equal(evaluatePreconditions({ ifMatch: v.etag }, v), undefined);
    assert.equal(evaluatePreconditions({ ifMatch: "*" }, v), undefined);
    assert.equal(evaluatePreconditions({ ifMatch: `W/${v.etag}` }, v), 412);
    assert.equal(evaluatePreconditions({ ifMatch: '"other"' }, v), 412);
    assert.equal(evaluatePreconditions({ ifUnmodifiedSince: at(mtimeMs - 1000) }, v), 412);
    assert.equal(evaluatePreconditions({ ifUnmodifiedSince: at(mtimeMs) }, v), undefined);
  });
});

describe("ifRangeAllows", () => {
  test("absent → yes; our strong ETag → yes; weak or other → no", () => {
    assert.equal(ifRangeAllows(undefined, v), true);
    assert.equal(ifRangeAllows(v.etag, v), true);
    assert.equal(ifRangeAllows(`W/${v.etag}`, v), false);
    assert.equal(ifRangeAllows('"other"', v), false);
  });

  test("a date must equal Last-Modified exactly (to the second)", () => {
    assert.equal(ifRangeAllows(at(mtimeMs), v), true);
    assert.equal(ifRangeAllows(at(mtimeMs + 1000), v), false);
    assert.equal(ifRangeAllows("garbage", v), false);
  });
});

describe("decideRange", () => {
  const size = 100;
  const cases: [string | undefined, ReturnType<typeof decideRange>][] = [
    [undefined, { kind: "full" }],
    ["bytes=0-1", { kind: "partial", start: 0, end: 1 }],
    ["bytes=10-", { kind: "partial", start: 10, end: 99 }],
    ["bytes=-10", { kind: "partial", start: 90, end: 99 }],
    ["bytes=90-500", { kind: "partial", start: 90, end: 99 }],
    ["bytes=0-4,5-9", { kind: "partial", start: 0, end: 9 }],
    ["bytes=0-1,50-60", { kind: "full" }],
    ["bytes=100-", { kind: "unsatisfiable" }],
    ["bytes=200-300", { kind: "unsatisfiable" }],
    ["bytes=-0", { kind: "unsatisfiable" }],
    ["bytes=abc", { kind: "unsatisfiable" }],
    ["bytes=5", { kind: "unsatisfiable" }],
    ["items=0-1", { kind: "full" }],
  ];
  for (const [header, expected] of cases) {
    test(`${header ?? "(none)"} on ${size} bytes → ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(decideRange(header, size), expected);
    });
  }

  test("any range of an empty file is unsatisfiable", () => {
    assert.deepEqual(decideRange("bytes=0-", 0), { kind: "unsatisfiable" });
  });
});

test("parseHttpDate reads IMF-fixdate and RFC 850 dates", () => {
  const s = Date.UTC(1994, 10, 6, 8, 49, 37) / 1000;
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), s);
  assert.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), s);
  assert.equal(parseHttpDate("nope"), undefined);
});
