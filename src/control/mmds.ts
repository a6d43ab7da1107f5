/**
 * Firecracker's metadata service (MMDS, docs/protocol.md §7.1): a session token by
 * `PUT /latest/api/token`, then the data by `GET /` with `X-metadata-token`. Every field is
 * optional and unknown fields are ignored (Wrenn's seed 004: a host that sends no `address` must
 * not break the parse).
 *
 * `MetadataPoller` polls every 50 ms until one read succeeds: at boot (unless -isnotfc) and for up
 * to 60 s after each /init. A read sets `E2B_SANDBOX_ID` / `E2B_TEMPLATE_ID` (Wrenn: `WRENN_*`)
 * and writes them to `<runDir>/.E2B_SANDBOX_ID` and `.E2B_TEMPLATE_ID`. An empty or missing id
 * leaves the previous value alone, so a resume whose metadata lacks the template keeps it.
 */
import http from "node:http";
import type { Logger } from "../log.ts";
import type { Session } from "../session.ts";
import { writeRunFile } from "./run-files.ts";
import type { FlavorNames } from "./vm-config.ts";

export interface MmdsData {
  instanceID: string | undefined;
  envID: string | undefined;
  /** Log collector URL. */
  address: string | undefined;
  accessTokenHash: string | undefined;
}

const TOKEN_TTL_SECONDS = 60;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_BYTES = 1 << 20;

export class MmdsClient {
  readonly #base: URL;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, timeoutMs = REQUEST_TIMEOUT_MS) {
    this.#base = new URL(baseUrl);
    this.#timeoutMs = timeoutMs;
  }

  /** One full read (token, then data). Rejects on any failure. */
  async read(signal?: AbortSignal): Promise<MmdsData> {
    const token = await this.#request("PUT", "/latest/api/token", { "X-metadata-token-ttl-seconds": String(TOKEN_TTL_SECONDS) }, signal);
    if (token === "") throw new Error("MMDS returned an empty token");
    const body = await this.#request("GET", "/", { "X-metadata-token": token, Accept: "application/json" }, signal);
    return parseMmdsData(body);
  }

  /** The access token hash, or undefined when the metadata cannot be read or has none. */
  async accessTokenHash(signal?: AbortSignal): Promise<string | undefined> {
    try {
      return (await this.read(signal)).accessTokenHash || undefined;
    } catch {
      return undefined;
    }
  }

  #request(method: string, path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<string> {
    const url = new URL(path, this.#base);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const stop = signal ? AbortSignal.any([timeout, signal]) : timeout;
    return new Promise((resolve, reject) => {
      // agent: false — a fresh connection per request, no keep-alive (as E2B envd's client).
      const req = http.request(url, { method, headers: { ...headers, "Content-Length": "0" }, agent: false, signal: stop }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (d: Buffer) => {
          size += d.length;
          if (size > MAX_RESPONSE_BYTES) req.destroy(new Error("MMDS response too large"));
          else chunks.push(d);
        });
        res.once("end", () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString("utf8");
          if (status < 200 || status > 299) reject(new Error(`MMDS ${method} ${path}: HTTP ${status}`));
          else resolve(text);
        });
        res.once("error", reject);
      });
      req.once("error", reject);
      req.end();
    });
  }
}

/** Parses the metadata document; only string fields are taken, everything else is ignored. */
export function parseMmdsData(text: string): MmdsData {
  const raw: unknown = JSON.parse(text);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error("MMDS data is not a JSON object");
  const o = raw as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  return { instanceID: str(o.instanceID), envID: str(o.envID), address: str(o.address), accessTokenHash: str(o.accessTokenHash) };
}

export interface MetadataPollerDeps {
  client: MmdsClient;
  session: Session;
  names: FlavorNames;
  runDir: string;
  log: Logger;
  intervalMs?: number;
  /** Called with each successful read (log shipping uses `address`). */
  onData?: (data: MmdsData) => void;
}

export class MetadataPoller implements Disposable {
  readonly #deps: MetadataPollerDeps;
  readonly #intervalMs: number;
  #running: AbortController | undefined;
  /** Epoch ms after which the current poll gives up; Infinity at boot. */
  #deadline = 0;
  #last: MmdsData | undefined;

  constructor(deps: MetadataPollerDeps) {
    this.#deps = deps;
    this.#intervalMs = deps.intervalMs ?? 50;
  }

  /** The last successful read, if any. */
  get last(): MmdsData | undefined {
    return this.#last;
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Polls until one read succeeds, for at most `forMs` (forever when omitted). Extends a running poll. */
  start(forMs?: number): void {
    const deadline = forMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + forMs;
    this.#deadline = Math.max(this.#deadline, deadline);
    if (this.#running) return;
    const controller = new AbortController();
    this.#running = controller;
    void this.#loop(controller.signal).finally(() => {
      if (this.#running !== controller) return;
      this.#running = undefined;
      this.#deadline = 0; // the next start() sets its own limit, not this poll's
    });
  }

  /** Stops polling (shutdown, snapshot). Idempotent. */
  stop(): void {
    this.#running?.abort();
    this.#running = undefined;
    this.#deadline = 0;
  }

  /** Shutdown: stop(). Idempotent. */
  [Symbol.dispose](): void {
    this.stop();
  }

  async #loop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted && Date.now() <= this.#deadline) {
      try {
        const data = await this.#deps.client.read(signal);
        if (signal.aborted) return;
        this.#apply(data);
        return;
      } catch (err) {
        if (signal.aborted) return;
        // Log the first failure and then every 100th, not 20 lines a second.
        if (failures++ % 100 === 0) this.#deps.log.debug("metadata not available yet", { err: String(err), failures });
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.#intervalMs);
        timer.unref();
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
    if (!signal.aborted) this.#deps.log.warn("gave up waiting for metadata", { failures });
  }

  #apply(data: MmdsData): void {
    const { session, names, runDir, log } = this.#deps;
    this.#last = data;
    for (const [name, value] of [
      [names.sandboxId, data.instanceID],
      [names.templateId, data.envID],
    ] as const) {
      if (!value) continue;
      session.internalEnv.set(name, value);
      try {
        writeRunFile(runDir, `.${name}`, value, 0o666);
      } catch (err) {
        log.warn("could not write the metadata file", { file: `.${name}`, err: String(err) });
      }
    }
    log.info("metadata read", { sandboxId: data.instanceID, templateId: data.envID, logCollector: Boolean(data.address) });
    this.#deps.onData?.(data);
  }
}
