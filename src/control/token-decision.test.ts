import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { Session } from "../session.ts";
import { checkInitToken, hashAccessToken, TOKEN_MISMATCH_MESSAGE, TOKEN_RESET_MESSAGE } from "./token-decision.ts";

const sha512 = (s: string) => createHash("sha512").update(s).digest("hex");

test("hashAccessToken is the lowercase hex SHA-512 of the token", () => {
  assert.equal(hashAccessToken("abc"), sha512("abc"));
  assert.match(hashAccessToken(""), /^[0-9a-f]{128}$/);
});

test("the decision table of docs/protocol.md §6.3, row by row", async () => {
  let lookups = 0;
  const mmds = (hash: string | undefined) => async () => {
    lookups++;
    return hash;
  };
  const accept = (stored: "unset" | "same" | "different", requested: string | undefined, hash: string | undefined) =>
    checkInitToken({ stored, requested, mmdsHash: mmds(hash) });
  const reject = (p: Promise<void>, message: string) =>
    assert.rejects(p, (err: Error & { code?: number }) => {
      assert.equal((err as { rawMessage?: string }).rawMessage, message);
      assert.equal(err.code, 16); // Unauthenticated
      return true;
    });

  // 1. stored, same → accept without asking MMDS
  await accept("same", "t", sha512("other"));
  assert.equal(lookups, 0);
  // 2. T matches the MMDS hash → accept, whatever is stored (upper-case hex tolerated)
  await accept("different", "t2", sha512("t2"));
  await accept("unset", "t2", sha512("t2").toUpperCase());
  // 3. absent + hash of "" → authorised reset
  await accept("different", undefined, sha512(""));
  // 4. nothing stored, MMDS unavailable or empty → first setup
  await accept("unset", "t", undefined);
  await accept("unset", "t", "");
  await accept("unset", undefined, undefined);
  // 5. absent otherwise → reset not authorised
  await reject(accept("different", undefined, undefined), TOKEN_RESET_MESSAGE);
  await reject(accept("different", undefined, sha512("t")), TOKEN_RESET_MESSAGE);
  await reject(accept("unset", undefined, sha512("t")), TOKEN_RESET_MESSAGE);
  // 6. T otherwise → validation failed
  await reject(accept("different", "t3", undefined), TOKEN_MISMATCH_MESSAGE);
  await reject(accept("different", "t3", sha512("t4")), TOKEN_MISMATCH_MESSAGE);
  await reject(accept("unset", "t3", sha512("t4")), TOKEN_MISMATCH_MESSAGE);
});

test("Session compares tokens in constant time and clears on undefined", () => {
  const s = new Session();
  assert.equal(s.compareAccessToken("x"), "unset");
  assert.equal(s.checkAccessToken(undefined), true);
  s.setAccessToken("secret");
  assert.equal(s.compareAccessToken("secret"), "same");
  assert.equal(s.compareAccessToken("secreT"), "different");
  assert.equal(s.compareAccessToken("secret-longer"), "different");
  assert.equal(s.compareAccessToken(undefined), "different");
  assert.equal(s.checkAccessToken(""), false);
  s.setAccessToken(undefined);
  assert.equal(s.hasAccessToken, false);
});
