import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { EnvdError, httpStatusOf } from "../errors.ts";
import { checkSigning, computeSignature, parseExpiration, type SigningRequest } from "./signing.ts";

const TOKEN = "secret-token";
const NOW = 1_800_000_000;

function req(over: Partial<SigningRequest>): SigningRequest {
  return {
    token: TOKEN,
    headerToken: undefined,
    signature: undefined,
    expiration: undefined,
    username: undefined,
    path: "/tmp/a.txt",
    operation: "read",
    nowSeconds: NOW,
    ...over,
  };
}

function rejectsWith(r: SigningRequest, message: string) {
  assert.throws(
    () => checkSigning(r),
    (err: unknown) => err instanceof EnvdError && httpStatusOf(err) === 401 && err.rawMessage === message,
  );
}

describe("computeSignature", () => {
  test("is v1_ + unpadded standard base64 of sha256(path:operation:username:token)", () => {
    const expected = `v1_${createHash("sha256").update("/tmp/a.txt:read::secret-token").digest("base64").replace(/=+$/, "")}`;
    assert.equal(computeSignature({ path: "/tmp/a.txt", operation: "read", username: "", token: TOKEN }), expected);
    assert.doesNotMatch(expected, /=/);
  });

  test("appends the expiration in decimal when given", () => {
    const raw = `/tmp/a.txt:write:user:${TOKEN}:1800000060`;
    const expected = `v1_${createHash("sha256").update(raw).digest("base64").replace(/=+$/, "")}`;
    assert.equal(
      computeSignature({ path: "/tmp/a.txt", operation: "write", username: "user", token: TOKEN, expiration: 1_800_000_060n }),
      expected,
    );
  });

  test("strips the one '=' of padding a 32-byte digest has", () => {
    const digest = createHash("sha256").update("f:read::t").digest("base64");
    assert.equal(computeSignature({ path: "f", operation: "read", username: "", token: "t" }), `v1_${digest.slice(0, -1)}`);
  });
});

describe("checkSigning", () => {
  test("no stored token: everything passes, signature or not", () => {
    checkSigning(req({ token: undefined }));
    checkSigning(req({ token: undefined, signature: "v1_garbage" }));
  });

  test("matching header token passes; a wrong one is refused even with a valid signature", () => {
    checkSigning(req({ headerToken: TOKEN }));
    const signature = computeSignature({ path: "/tmp/a.txt", operation: "read", username: "", token: TOKEN });
    rejectsWith(req({ headerToken: "wrong", signature }), "access token present in header but does not match");
  });

  test("an empty header token counts as absent", () => {
    rejectsWith(req({ headerToken: "" }), "missing signature query parameter");
  });

  test("no header and no signature → missing signature", () => {
    rejectsWith(req({}), "missing signature query parameter");
  });

  test("valid signature passes; username absent signs as the empty string", () => {
    const signature = computeSignature({ path: "/tmp/a.txt", operation: "read", username: "", token: TOKEN });
    checkSigning(req({ signature }));
    rejectsWith(req({ signature, username: "root" }), "invalid signature");
  });

  test("signature for another path, operation, user or token is invalid", () => {
    const base = { path: "/tmp/a.txt", operation: "read" as const, username: "", token: TOKEN };
    for (const forged of [
      computeSignature({ ...base, path: "/tmp/b.txt" }),
      computeSignature({ ...base, operation: "write" }),
      computeSignature({ ...base, username: "user" }),
      computeSignature({ ...base, token: "other" }),
      computeSignature(base).slice(0, -1),
      "v1_",
      "",
    ]) {
      rejectsWith(req({ signature: forged }), "invalid signature");
    }
  });

  test("the expiration is part of the signature and is enforced (equal to now is still valid)", () => {
    const sign = (expiration: bigint) =>
      computeSignature({ path: "/tmp/a.txt", operation: "read", username: "", token: TOKEN, expiration });
    checkSigning(req({ signature: sign(BigInt(NOW)), expiration: BigInt(NOW) }));
    checkSigning(req({ signature: sign(BigInt(NOW + 60)), expiration: BigInt(NOW + 60) }));
    rejectsWith(req({ signature: sign(BigInt(NOW - 1)), expiration: BigInt(NOW - 1) }), "signature is already expired");
    // A signature made without the expiration does not verify once one is added to the URL.
    const noExp = computeSignature({ path: "/tmp/a.txt", operation: "read", username: "", token: TOKEN });
    rejectsWith(req({ signature: noExp, expiration: BigInt(NOW + 60) }), "invalid signature");
  });
});

describe("parseExpiration", () => {
  test("absent → undefined; integers parse", () => {
    assert.equal(parseExpiration(null), undefined);
    assert.equal(parseExpiration("1800000000"), 1_800_000_000n);
    assert.equal(parseExpiration("-5"), -5n);
    assert.equal(parseExpiration("+7"), 7n);
  });

  for (const bad of ["", "abc", "1.5", "1e9", " 1", "99999999999999999999"]) {
    test(`'${bad}' → 400`, () => {
      assert.throws(() => parseExpiration(bad), (err: unknown) => err instanceof EnvdError && httpStatusOf(err) === 400);
    });
  }
});
