/**
 * Signed `/files` URLs (docs/protocol.md §5.2): who may read or write a file without the access-token
 * header. Pure: the caller passes the stored token, the request's values and the clock.
 *
 *   signature = "v1_" + base64std_nopad(sha256("path:operation:username:token[:expiration]"))
 *
 * `path` and `username` are the raw query values ("" when absent, never resolved), so a URL the
 * e2b SDK signed for the default user verifies with username "".
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, EnvdError } from "../errors.ts";

export type SigningOperation = "read" | "write";

export interface SignatureInput {
  path: string;
  operation: SigningOperation;
  username: string;
  token: string;
  /** Unix seconds; part of the payload only when present. */
  expiration?: bigint | undefined;
}

export function computeSignature(input: SignatureInput): string {
  const parts = [input.path, input.operation, input.username, input.token];
  if (input.expiration !== undefined) parts.push(input.expiration.toString());
  const digest = createHash("sha256").update(parts.join(":"), "utf8").digest("base64");
  return `v1_${digest.replace(/=+$/, "")}`;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Parses `signature_expiration` as Go's query binding does (a decimal int64). Absent → undefined;
 * anything else that is not an integer → InvalidArgument (400), before any auth decision.
 */
export function parseExpiration(raw: string | null | undefined): bigint | undefined {
  if (raw === null || raw === undefined) return undefined;
  if (!/^[+-]?\d{1,19}$/.test(raw)) {
    throw new EnvdError(Code.InvalidArgument, `invalid signature_expiration '${raw}': must be an integer (Unix seconds)`);
  }
  const n = BigInt(raw);
  if (n < INT64_MIN || n > INT64_MAX) {
    throw new EnvdError(Code.InvalidArgument, `invalid signature_expiration '${raw}': out of range`);
  }
  return n;
}

export interface SigningRequest {
  /** The stored access token; undefined when none is set (then everything is allowed). */
  token: string | undefined;
  /** `X-Access-Token` of the request. */
  headerToken: string | undefined;
  signature: string | undefined;
  expiration: bigint | undefined;
  /** Raw `username` query value. */
  username: string | undefined;
  /** Raw `path` query value. */
  path: string | undefined;
  operation: SigningOperation;
  nowSeconds: number;
}

/**
 * Decides a `/files` request exactly as Go envd does: no token → allowed; a non-empty header
 * token must match (even with a valid signature); otherwise the signature must match (constant
 * time) and not be expired (an expiration equal to now is still valid). Throws Unauthenticated
 * (401) with Go's messages.
 */
export function checkSigning(req: SigningRequest): void {
  if (req.token === undefined) return;
  if (req.headerToken !== undefined && req.headerToken !== "") {
    if (!safeEqualStrings(req.headerToken, req.token)) {
      throw new EnvdError(Code.Unauthenticated, "access token present in header but does not match");
    }
    return;
  }
  if (req.signature === undefined) throw new EnvdError(Code.Unauthenticated, "missing signature query parameter");
  const expected = computeSignature({
    path: req.path ?? "",
    operation: req.operation,
    username: req.username ?? "",
    token: req.token,
    expiration: req.expiration,
  });
  if (!safeEqualStrings(req.signature, expected)) throw new EnvdError(Code.Unauthenticated, "invalid signature");
  if (req.expiration !== undefined && req.expiration < BigInt(Math.floor(req.nowSeconds))) {
    throw new EnvdError(Code.Unauthenticated, "signature is already expired");
  }
}

/** Constant time in the content; only the length can leak (as with crypto/subtle). */
function safeEqualStrings(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  if (x.length !== y.length) {
    timingSafeEqual(y, y);
    return false;
  }
  return timingSafeEqual(x, y);
}
