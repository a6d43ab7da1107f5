/**
 * Whether an /init may set or change the access token (docs/protocol.md §6.3, first matching row wins):
 *
 * | stored | request | MMDS hash        | result                        |
 * | set    | same    | any              | accept                        |
 * | any    | T       | = SHA-512(T)     | accept (host-authorised swap) |
 * | any    | absent  | = SHA-512("")    | accept (host-authorised reset)|
 * | unset  | any     | unavailable / "" | accept (first setup)          |
 * | any    | absent  | anything else    | 401 reset not authorized      |
 * | any    | T       | anything else    | 401 validation failed         |
 *
 * The hash is the lowercase hex SHA-512 of the token's bytes. "Unavailable" means not in
 * Firecracker, or the metadata lookup failed.
 */
import { createHash } from "node:crypto";
import { Code, EnvdError } from "../errors.ts";
import { safeEqual } from "../session.ts";

export const TOKEN_MISMATCH_MESSAGE = "access token validation failed";
export const TOKEN_RESET_MESSAGE = "access token reset not authorized";

export function hashAccessToken(token: string): string {
  return createHash("sha512").update(token, "utf8").digest("hex");
}

export interface TokenDecisionInput {
  /** Is a token stored, and does the request's token equal it (constant time)? */
  stored: "unset" | "same" | "different";
  requested: string | undefined;
  /** Looked up only when needed; undefined = unavailable. */
  mmdsHash: () => Promise<string | undefined>;
}

/** Resolves when the /init may proceed; rejects with Unauthenticated and E2B's exact text. */
export async function checkInitToken(input: TokenDecisionInput): Promise<void> {
  if (input.stored === "same") return;
  const hash = (await input.mmdsHash())?.toLowerCase();
  const available = hash !== undefined && hash !== "";
  if (available) {
    const expected = hashAccessToken(input.requested ?? "");
    if (safeEqual(Buffer.from(hash), Buffer.from(expected))) return;
  } else if (input.stored === "unset") {
    return;
  }
  throw new EnvdError(Code.Unauthenticated, input.requested === undefined ? TOKEN_RESET_MESSAGE : TOKEN_MISMATCH_MESSAGE);
}
