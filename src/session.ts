/**
 * State the host sets through `/init` and every request reads: default user and workdir, the
 * default environment of processes, and the access token.
 *
 * One shared object (Wrenn's seed 001 bug was a copy of it). Written by the /init handler, one
 * request at a time (control/init-service.ts holds a lock), and for the internal variables also by
 * the daemon at boot and the metadata poller. The fields are plain and public: a reader sees each
 * one as it is when it reads it, and there is no consistent snapshot across fields.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export class Session {
  #defaultUser = "root";
  #defaultUserDelivered = false;
  defaultWorkdir: string | undefined;
  /** Variables the daemon itself defines (E2B_SANDBOX, sandbox and template ids): /init cannot override them. */
  readonly internalEnv = new Map<string, string>();
  /** Variables from the last applied /init: replaced as a whole, never merged. */
  initEnv = new Map<string, string>();
  #accessToken: Buffer | undefined;

  /** The user requests act as when they name none: root until /init delivers one. */
  get defaultUser(): string {
    return this.#defaultUser;
  }

  set defaultUser(name: string) {
    this.#defaultUser = name;
    this.#defaultUserDelivered = true;
  }

  /**
   * False while no /init has delivered a default user (root is then a fallback, not a choice):
   * `X-Envd-Defaults` says so, and E2B's orchestrator uses it to see a user lost across a restart.
   */
  get defaultUserDelivered(): boolean {
    return this.#defaultUserDelivered;
  }

  /** The default environment of every process: /init variables, then the internal ones. */
  defaultEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of this.initEnv) env[k] = v;
    for (const [k, v] of this.internalEnv) env[k] = v;
    return env;
  }

  get hasAccessToken(): boolean {
    return this.#accessToken !== undefined;
  }

  get accessToken(): string | undefined {
    return this.#accessToken?.toString("utf8");
  }

  setAccessToken(token: string | undefined): void {
    this.#accessToken?.fill(0);
    this.#accessToken = token === undefined || token === "" ? undefined : Buffer.from(token, "utf8");
  }

  /** Constant-time comparison with the stored token; true when no token is set. */
  checkAccessToken(candidate: string | undefined): boolean {
    return this.compareAccessToken(candidate) !== "different";
  }

  /** "unset" when no token is stored, else whether `candidate` equals it (constant time). */
  compareAccessToken(candidate: string | undefined): "unset" | "same" | "different" {
    const stored = this.#accessToken;
    if (!stored) return "unset";
    if (candidate === undefined) return "different";
    return safeEqual(stored, Buffer.from(candidate, "utf8")) ? "same" : "different";
  }
}

/**
 * Constant-time equality that leaks neither which byte differs nor the lengths: both sides are
 * hashed first, so the comparison always runs over 32 bytes.
 */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  const da = createHash("sha256").update(a).digest();
  const db = createHash("sha256").update(b).digest();
  return timingSafeEqual(da, db) && a.length === b.length;
}
