/**
 * Today's Wrenn host agent, as far as envd can tell: every call of wrennhq/wrenn
 * `pkg/envdclient/` (client.go, its background-process and PTY helpers: StartBackground,
 * ConnectProcess, KillProcess, PtyStart/Connect/SendInput/Resize/Kill, and the pause/restore
 * helpers around it) with the same method, path, headers and body, and the same idea of success
 * (docs/compatibility.md, "The Wrenn host, today").
 * Connect calls go the way connect-go sends them: the binary codec, `Connect-Protocol-Version: 1`,
 * `application/proto` (unary) or `application/connect+proto` with 5-byte envelopes (streams).
 *
 * Used by the e2e play test (test/e2e/wrenn-host.e2e.test.ts) and the VM test (test/vm/).
 * Each method throws, with the status and body, where the Go client returns an error.
 */
import { randomUUID } from "node:crypto";
import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { ListDirRequestSchema, ListDirResponseSchema } from "../../src/gen/filesystem/filesystem_pb.js";
import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  ListRequestSchema,
  ListResponseSchema,
  SendInputRequestSchema,
  SendInputResponseSchema,
  SendSignalRequestSchema,
  SendSignalResponseSchema,
  StartRequestSchema,
  StartResponseSchema,
  UpdateRequestSchema,
  UpdateResponseSchema,
} from "../../src/gen/process/process_pb.js";

const USER_AGENT = "connect-go/1.18.1 (go1.24.4)";

/** A server-streaming call as connect-go sends it: one enveloped binary message, Connect headers. */
function streamRequest(request: Uint8Array): { method: "POST"; headers: Record<string, string>; body: Buffer } {
  const envelope = Buffer.alloc(5 + request.length);
  envelope.writeUInt32BE(request.length, 1);
  envelope.set(request, 5);
  return {
    method: "POST",
    headers: {
      "Content-Type": "application/connect+proto",
      "Connect-Protocol-Version": "1",
      "Connect-Accept-Encoding": "gzip",
      "User-Agent": USER_AGENT,
    },
    body: envelope,
  };
}

export interface PreloadStatus {
  state: "idle" | "running" | "done" | "failed" | "cancelled";
  regions: number;
  pages: number;
  bytes: number;
  elapsed_sec: number;
  source: string;
  error: string | null;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  /** The end event's error text, if any. */
  error: string | undefined;
  pid: number;
}

export class HostCallError extends Error {
  readonly call: string;
  readonly status: number;
  readonly body: string;

  constructor(call: string, status: number, body: string) {
    super(`${call}: status ${status}: ${body}`);
    this.call = call;
    this.status = status;
    this.body = body;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One event of a process stream, as the host's decoder (`procEventToStreamEvent`, `drainPtyStream`) sees it. */
export interface HostEvent {
  type: "start" | "stdout" | "stderr" | "pty" | "end";
  pid?: number;
  data?: Uint8Array;
  exitCode?: number;
  error?: string | undefined;
}

/** A process selector as the host builds it: by tag when it has one, else by pid. */
export type HostSelector = { pid: number } | { tag: string };

const selectorOf = (s: HostSelector) =>
  "tag" in s ? { selector: { case: "tag" as const, value: s.tag } } : { selector: { case: "pid" as const, value: s.pid } };

/**
 * A server stream read as it arrives (Start or Connect, connect-go framing): the events so far,
 * `waitFor` one that matches, `close()` as the host cancels its context.
 */
export class HostStream {
  readonly events: HostEvent[] = [];
  /** Settles when the stream ends: resolves on a clean end-stream, rejects with its error. */
  readonly ended: Promise<void>;
  readonly #ctl: AbortController;
  #listeners = new Set<() => void>();
  #over = false;

  constructor(ctl: AbortController, read: (push: (ev: HostEvent) => void) => Promise<void>) {
    this.#ctl = ctl;
    this.ended = read((ev) => {
      this.events.push(ev);
      for (const l of this.#listeners) l();
    }).finally(() => {
      this.#over = true;
      for (const l of this.#listeners) l();
    });
    this.ended.catch(() => {});
  }

  /** The bytes of every data event of these kinds so far, as text. */
  text(...kinds: HostEvent["type"][]): string {
    return Buffer.concat(this.events.filter((e) => kinds.includes(e.type) && e.data).map((e) => e.data as Uint8Array)).toString();
  }

  /** Resolves once `check(this)` holds; rejects if the stream ends first. */
  waitFor(check: (s: HostStream) => boolean, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const test = () => {
        if (check(this)) {
          this.#listeners.delete(test);
          resolve();
        } else if (this.#over) {
          this.#listeners.delete(test);
          reject(new Error(`the stream ended before ${what}: ${JSON.stringify(this.events.map((e) => e.type))} ${this.text("stdout", "stderr", "pty")}`));
        }
      };
      this.#listeners.add(test);
      test();
    });
  }

  close(): void {
    this.#ctl.abort();
  }
}

export class WrennHost {
  readonly base: string;
  /** Every call made, in order ("GET /health", "POST /process.Process/Start", …). */
  readonly calls: string[] = [];

  constructor(base: string) {
    this.base = base.replace(/\/+$/, "");
  }

  async #fetch(call: string, path: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<Response> {
    this.calls.push(call);
    const { timeoutMs = 120_000, ...rest } = init;
    return fetch(`${this.base}${path}`, { ...rest, signal: AbortSignal.timeout(timeoutMs) });
  }

  /** WaitUntilReady: GET /health every 100 ms until 200. Resolves with the attempts it took. */
  async waitUntilReady(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await this.#fetch("GET /health", "/health", { timeoutMs: 2_000 });
        await res.arrayBuffer();
        if (res.status === 200) return attempt;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`envd not ready in ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** FetchVersion: GET /health → {"version"}. */
  async fetchVersion(): Promise<string> {
    const res = await this.#fetch("GET /health", "/health");
    const text = await res.text();
    if (res.status !== 200) throw new HostCallError("fetch version", res.status, text);
    return (JSON.parse(text) as { version: string }).version;
  }

  /** PostInitWithDefaults: a fresh lifecycle_id and the time on every call; 204 or an error. */
  async postInitWithDefaults(opts: {
    defaultUser?: string;
    envVars?: Record<string, string>;
    sandboxId?: string;
    templateId?: string;
    proxyDomain?: string;
  } = {}): Promise<{ lifecycleId: string; body: Record<string, unknown> }> {
    const body: Record<string, unknown> = { timestamp: new Date().toISOString(), lifecycle_id: randomUUID() };
    if (opts.defaultUser) body.defaultUser = opts.defaultUser;
    if (opts.envVars && Object.keys(opts.envVars).length > 0) body.envVars = opts.envVars;
    if (opts.sandboxId) body.sandbox_id = opts.sandboxId;
    if (opts.templateId) body.template_id = opts.templateId;
    if (opts.proxyDomain) body.proxy_domain = opts.proxyDomain;
    const res = await this.#fetch("POST /init", "/init", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== 204) throw new HostCallError("post init", res.status, text);
    return { lifecycleId: body.lifecycle_id as string, body };
  }

  async mountVolume(serial: string, mountPath: string): Promise<void> {
    await this.#expect204("mount volume", "POST /volumes/mount", "/volumes/mount", { serial, mount_path: mountPath });
  }

  async unmountVolume(mountPath: string): Promise<void> {
    await this.#expect204("unmount volume", "POST /volumes/unmount", "/volumes/unmount", { mount_path: mountPath });
  }

  /** WriteFile: PUT /files?path=… raw octet-stream, no username (the newest host); 200. */
  async writeFile(path: string, content: Uint8Array | string): Promise<unknown> {
    const res = await this.#fetch("PUT /files", `/files?${new URLSearchParams({ path })}`, {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream" },
      body: typeof content === "string" ? content : Buffer.from(content),
    });
    const text = await res.text();
    if (res.status !== 200) throw new HostCallError(`write file ${path}`, res.status, text);
    return JSON.parse(text);
  }

  /** ReadFile: GET /files?path=… (older hosts add username=root); 200. */
  async readFile(path: string, opts: { username?: string } = {}): Promise<Buffer> {
    const q = new URLSearchParams({ path, ...(opts.username ? { username: opts.username } : {}) });
    const res = await this.#fetch("GET /files", `/files?${q}`);
    const data = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw new HostCallError(`read file ${path}`, res.status, data.toString());
    return data;
  }

  /** Exec: Process/Start with stdin false, collected output and the end event. */
  async exec(cmd: string, args: string[], opts: { envs?: Record<string, string>; cwd?: string } = {}): Promise<ExecResult> {
    const req = create(StartRequestSchema, {
      process: {
        cmd,
        args,
        ...(opts.envs && Object.keys(opts.envs).length > 0 ? { envs: opts.envs } : {}),
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      },
      stdin: false,
    });
    const messages = await this.#serverStream("/process.Process/Start", toBinary(StartRequestSchema, req));
    const out: ExecResult = { stdout: "", stderr: "", exitCode: -1, error: undefined, pid: 0 };
    const dec = new TextDecoder();
    for (const bytes of messages) {
      const ev = fromBinary(StartResponseSchema, bytes).event?.event;
      if (!ev) continue;
      if (ev.case === "start") out.pid = ev.value.pid;
      else if (ev.case === "data" && ev.value.output.case === "stdout") out.stdout += dec.decode(ev.value.output.value, { stream: true });
      else if (ev.case === "data" && ev.value.output.case === "stderr") out.stderr += dec.decode(ev.value.output.value, { stream: true });
      else if (ev.case === "end") {
        out.exitCode = ev.value.exitCode;
        out.error = ev.value.error;
      }
    }
    return out;
  }

  /** FetchActivity: GET /activity. */
  async fetchActivity(): Promise<{ cpu_count: number; cpu_used_pct: number; net_bps: number; disk_bps: number; cacheControl: string | null }> {
    const res = await this.#fetch("GET /activity", "/activity");
    const text = await res.text();
    if (res.status !== 200) throw new HostCallError("fetch activity", res.status, text);
    return { ...(JSON.parse(text) as { cpu_count: number; cpu_used_pct: number; net_bps: number; disk_bps: number }), cacheControl: res.headers.get("cache-control") };
  }

  async startMemoryPreload(): Promise<PreloadStatus> {
    return this.#preload("POST");
  }

  async getMemoryPreloadStatus(): Promise<PreloadStatus> {
    return this.#preload("GET");
  }

  /** WaitMemoryPreload: GET every `intervalMs` (the host: 1 s) while the state is "running". */
  async waitMemoryPreload(opts: { intervalMs?: number; timeoutMs?: number } = {}): Promise<{ status: PreloadStatus; polls: number }> {
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
    for (let polls = 1; ; polls++) {
      const status = await this.getMemoryPreloadStatus();
      if (status.state !== "running") return { status, polls };
      if (Date.now() > deadline) throw new Error(`memory preload still running: ${JSON.stringify(status)}`);
      await sleep(opts.intervalMs ?? 1_000);
    }
  }

  async cancelMemoryPreload(): Promise<void> {
    const res = await this.#fetch("POST /memory/preload/cancel", "/memory/preload/cancel", { method: "POST" });
    const text = await res.text();
    if (res.status !== 204) throw new HostCallError("preload cancel", res.status, text);
  }

  /** PrepareSnapshot: POST /snapshot/prepare, no body, 5 s (pause.go). Resolves with the ms it took. */
  async prepareSnapshot(): Promise<number> {
    const t0 = performance.now();
    const res = await this.#fetch("POST /snapshot/prepare", "/snapshot/prepare", { method: "POST", timeoutMs: 5_000 });
    const text = await res.text();
    if (res.status !== 204) throw new HostCallError("prepare snapshot", res.status, text);
    return performance.now() - t0;
  }

  /** WaitUntilRPCReady: Process/List every 200 ms until it succeeds. Resolves with the attempts. */
  async waitUntilRpcReady(timeoutMs = 30_000): Promise<{ attempts: number; processes: MessageShape<typeof ListResponseSchema>["processes"] }> {
    const deadline = Date.now() + timeoutMs;
    for (let attempts = 1; ; attempts++) {
      try {
        const r = await this.#unary("/process.Process/List", ListRequestSchema, {}, ListResponseSchema, 2_000);
        return { attempts, processes: r.processes };
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      await sleep(200);
    }
  }

  async listDir(path: string, depth: number): Promise<MessageShape<typeof ListDirResponseSchema>> {
    return this.#unary("/filesystem.Filesystem/ListDir", ListDirRequestSchema, { path, depth }, ListDirResponseSchema);
  }

  /** StartBackground: Start with a tag and stdin false; the stream is closed once the start event gives the pid. */
  async startBackground(tag: string, cmd: string, args: string[], opts: { envs?: Record<string, string>; cwd?: string } = {}): Promise<number> {
    const req = create(StartRequestSchema, { process: { cmd, args, envs: opts.envs ?? {}, ...(opts.cwd ? { cwd: opts.cwd } : {}) }, tag, stdin: false });
    const stream = this.#openStream("/process.Process/Start", toBinary(StartRequestSchema, req), (b) => fromBinary(StartResponseSchema, b).event);
    try {
      await stream.waitFor((s) => s.events.some((e) => e.type === "start"), "the start event");
      return stream.events.find((e) => e.type === "start")?.pid as number;
    } finally {
      stream.close();
    }
  }

  /** ConnectProcess: Connect by tag (when given) or pid; the events as they come. */
  connectProcess(selector: HostSelector): HostStream {
    const req = create(ConnectRequestSchema, { process: selectorOf(selector) });
    return this.#openStream("/process.Process/Connect", toBinary(ConnectRequestSchema, req), (b) => fromBinary(ConnectResponseSchema, b).event);
  }

  /** KillProcess: SendSignal by tag or pid (9 SIGKILL, 15 SIGTERM). */
  async killProcess(selector: HostSelector, signal: 9 | 15): Promise<void> {
    await this.#unary("/process.Process/SendSignal", SendSignalRequestSchema, { process: selectorOf(selector), signal }, SendSignalResponseSchema);
  }

  /** PtyStart: Start with a PTY of cols × rows, a tag and stdin true. */
  ptyStart(tag: string, cmd: string, args: string[], cols: number, rows: number, opts: { envs?: Record<string, string>; cwd?: string } = {}): HostStream {
    const req = create(StartRequestSchema, {
      process: { cmd, args, envs: opts.envs ?? {}, ...(opts.cwd ? { cwd: opts.cwd } : {}) },
      pty: { size: { cols, rows } },
      tag,
      stdin: true,
    });
    return this.#openStream("/process.Process/Start", toBinary(StartRequestSchema, req), (b) => fromBinary(StartResponseSchema, b).event);
  }

  /** PtyConnect: Connect by tag. */
  ptyConnect(tag: string): HostStream {
    return this.connectProcess({ tag });
  }

  /** PtySendInput: SendInput of raw bytes to the PTY, by tag. */
  async ptySendInput(tag: string, data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    await this.#unary(
      "/process.Process/SendInput",
      SendInputRequestSchema,
      { process: selectorOf({ tag }), input: { input: { case: "pty", value: bytes } } },
      SendInputResponseSchema,
    );
  }

  /** PtyResize: Update with the new size, by tag. */
  async ptyResize(tag: string, cols: number, rows: number): Promise<void> {
    await this.#unary("/process.Process/Update", UpdateRequestSchema, { process: selectorOf({ tag }), pty: { size: { cols, rows } } }, UpdateResponseSchema);
  }

  /** PtyKill: SendSignal SIGKILL, by tag. */
  async ptyKill(tag: string): Promise<void> {
    await this.killProcess({ tag }, 9);
  }

  #openStream(path: string, request: Uint8Array, eventOf: (bytes: Uint8Array) => MessageShape<typeof StartResponseSchema>["event"]): HostStream {
    this.calls.push(`POST ${path}`);
    const ctl = new AbortController();
    return new HostStream(ctl, async (push) => {
      const res = await fetch(`${this.base}${path}`, { ...streamRequest(request), signal: ctl.signal });
      if (res.status !== 200) throw new HostCallError(path, res.status, await res.text());
      let buf = Buffer.alloc(0);
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf = Buffer.concat([buf, chunk]);
          while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
            const flags = buf[0] as number;
            const data = buf.subarray(5, 5 + buf.readUInt32BE(1));
            buf = buf.subarray(5 + data.length);
            if (flags & 0x02) {
              const end = JSON.parse(data.toString() || "{}") as { error?: { code: string; message: string } };
              if (end.error) throw new Error(`${path}: ${end.error.code}: ${end.error.message}`);
              return;
            }
            const ev = eventOf(new Uint8Array(data))?.event;
            if (ev?.case === "start") push({ type: "start", pid: ev.value.pid });
            else if (ev?.case === "data" && ev.value.output.case !== undefined) push({ type: ev.value.output.case, data: ev.value.output.value });
            else if (ev?.case === "end") push({ type: "end", exitCode: ev.value.exitCode, error: ev.value.error });
          }
        }
      } catch (err) {
        if (ctl.signal.aborted) return; // the host cancelled its context
        throw err;
      }
      if (!ctl.signal.aborted) throw new Error(`${path}: the stream ended without an end-stream message`);
    });
  }

  async #expect204(what: string, call: string, path: string, body: unknown): Promise<void> {
    const res = await this.#fetch(call, path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const text = await res.text();
    if (res.status !== 204) throw new HostCallError(what, res.status, text);
  }

  async #preload(method: "GET" | "POST"): Promise<PreloadStatus> {
    const res = await this.#fetch(`${method} /memory/preload`, "/memory/preload", { method });
    const text = await res.text();
    if (res.status !== 200) throw new HostCallError(`memory preload ${method}`, res.status, text);
    return JSON.parse(text) as PreloadStatus;
  }

  async #unary<I extends DescMessage, O extends DescMessage>(
    path: string,
    inSchema: I,
    init: MessageInitShape<I>,
    outSchema: O,
    timeoutMs = 120_000,
  ): Promise<MessageShape<O>> {
    const res = await this.#fetch(`POST ${path}`, path, {
      method: "POST",
      headers: { "Content-Type": "application/proto", "Connect-Protocol-Version": "1", "Accept-Encoding": "gzip", "User-Agent": USER_AGENT },
      body: Buffer.from(toBinary(inSchema, create(inSchema, init))),
      timeoutMs,
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) throw new HostCallError(path, res.status, Buffer.from(bytes).toString());
    return fromBinary(outSchema, bytes);
  }

  /** A server stream: the request in one envelope; the messages back, the end-stream checked. */
  async #serverStream(path: string, request: Uint8Array): Promise<Uint8Array[]> {
    const res = await this.#fetch(`POST ${path}`, path, { ...streamRequest(request), timeoutMs: 600_000 });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw new HostCallError(path, res.status, body.toString());
    const messages: Uint8Array[] = [];
    for (let at = 0; at < body.length; ) {
      const flags = body[at] as number;
      const len = body.readUInt32BE(at + 1);
      const data = body.subarray(at + 5, at + 5 + len);
      at += 5 + len;
      if (flags & 0x02) {
        const end = JSON.parse(data.toString() || "{}") as { error?: { code: string; message: string } };
        if (end.error) throw new Error(`${path}: ${end.error.code}: ${end.error.message}`);
        return messages;
      }
      messages.push(new Uint8Array(data));
    }
    throw new Error(`${path}: the stream ended without an end-stream message`);
  }
}
