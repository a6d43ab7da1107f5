/**
 * Starts the real daemon as a child process (under Bun or Node 26) on a free port and hands out
 * clients for it: Connect clients generated from our protos, plain fetch, and the e2b SDK.
 *
 *   await using envd = await startDaemon({ runtime: "bun" });
 *
 * Disposal sends SIGTERM and checks the daemon exits 0 and leaves no child process behind.
 *
 * That check is real because the test process makes itself a child subreaper
 * (prctl(PR_SET_CHILD_SUBREAPER) through the daemon's own FFI table): a process that outlives the
 * daemon is re-parented to this process, not to PID 1, so after the daemon exits it shows up as a
 * new child of ours. Without FFI the check falls back to the daemon's descendants recorded just
 * before the stop signal (pid and start time), which misses processes spawned during shutdown.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { connect as connectHttp2 } from "node:http2";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Filesystem } from "../../src/gen/filesystem/filesystem_pb.js";
import { Process } from "../../src/gen/process/process_pb.js";
import { Sandbox } from "e2b";
import { loadLibc, PR_SET_CHILD_SUBREAPER } from "../../src/sys/libc.ts";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(ROOT, "node_modules", ".bin");

export type Runtime = "bun" | "node";

/** The runtimes the e2e suites run the daemon under; ENVD_RUNTIMES=bun (or node) narrows it. */
export const RUNTIMES: Runtime[] = (process.env.ENVD_RUNTIMES ?? "bun,node")
  .split(",")
  .map((s) => s.trim())
  .filter((s): s is Runtime => s === "bun" || s === "node");

export const isRoot = process.getuid?.() === 0;

/** Daemons started by this process and not stopped yet. */
const liveDaemons = new Set<number>();
const ownGroup = Number(statFields(process.pid)?.[2]);

/** Whether orphans of a daemon come to this process (see the header). */
export const isSubreaper = (() => {
  const libc = loadLibc();
  return libc !== undefined && libc.prctl(PR_SET_CHILD_SUBREAPER, 1) === 0;
})();

/** Creates a throwaway user (`useradd` with `args`), removing a leftover one of that name first. */
export function createTestUser(name: string, args: string[]): void {
  removeTestUser(name);
  execFileSync("useradd", [...args, name]);
}

/** Removes a throwaway user and its home; quiet when it does not exist. */
export function removeTestUser(name: string): void {
  try {
    execFileSync("userdel", ["-r", name], { stdio: "ignore" });
  } catch {
    // not there
  }
}

export interface StartOptions {
  runtime: Runtime;
  args?: string[];
  env?: Record<string, string>;
  /** Command prefix the runtime runs under, e.g. ["ip", "netns", "exec", "ns1"] or ["unshare", "--pid", …]. */
  wrap?: string[];
  /** Address the clients connect to (default 127.0.0.1; pass `--host` in `args` to match). */
  urlHost?: string;
  /** Run this executable (the compiled binary, `npm run build`) instead of `src/main.ts` under `runtime`. */
  executable?: string;
  /** Working directory of the daemon (default: this process's). */
  cwd?: string;
}

export interface Daemon extends AsyncDisposable {
  runtime: Runtime;
  port: number;
  pid: number;
  url: string;
  /** Every log line the daemon wrote so far, parsed. */
  logs: Record<string, unknown>[];
  process: Client<typeof Process>;
  filesystem: Client<typeof Filesystem>;
  /** Clients with the binary codec (as the Wrenn host uses). */
  binary: { process: Client<typeof Process>; filesystem: Client<typeof Filesystem> };
  transport(options?: { binary?: boolean; grpcWeb?: boolean; headers?: Record<string, string> }): Transport;
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /**
   * The real e2b SDK pointed at this daemon (debug mode: no API calls, envd version 99.99.99).
   * Pass `envdAccessToken` once /init has set a token.
   */
  sandbox(options?: { envdAccessToken?: string }): Promise<Sandbox>;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** After stop(): the processes that outlived the daemon (killed by the harness), as "pid:start cmd". */
  leftBehind(): string[];
  child: ChildProcess;
}

/** The program, arguments and environment startDaemon runs the daemon with (any free port, loopback). */
export function daemonCommand(options: StartOptions): { file: string; argv: string[]; env: Record<string, string> } {
  const flags = ["--port", "0", "--host", "127.0.0.1", "--isnotfc", ...(options.args ?? [])];
  const program = options.executable !== undefined ? [options.executable] : [join(BIN, options.runtime), join(ROOT, "src", "main.ts")];
  const [file, ...argv] = [...(options.wrap ?? []), ...program, ...flags] as [string, ...string[]];
  // ENVD_CLOCK_COMMAND, ENVD_CHRONYC_COMMAND: an /init in a test must never set this machine's clock
  // or make its chrony step.
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", ENVD_CLOCK_COMMAND: "true", ENVD_CHRONYC_COMMAND: "true", ...options.env };
  return { file, argv, env };
}

export async function startDaemon(options: StartOptions): Promise<Daemon> {
  const { file, argv, env } = daemonCommand(options);
  const child = spawn(file, argv, { cwd: options.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => stderr.push(d.toString()));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start in 20 s: ${stderr.join("")}`)), 20_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before listening: ${stderr.join("")}`));
    });
    lines.on("line", (line) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(rec);
      if (rec.msg === "listening") {
        clearTimeout(timer);
        resolve(rec.port as number);
      }
    });
  });
  const url = `http://${options.urlHost ?? "127.0.0.1"}:${port}`;
  const daemonStart = Number(statFields(child.pid as number)?.[19] ?? 0);
  liveDaemons.add(child.pid as number);
  let exitSignal: NodeJS.Signals | null = null;
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code, signal) => {
      exitSignal = signal;
      resolve(code);
    }),
  );
  // After "exit", stderr may still hold the last words (a runtime's abort message): wait for "close".
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));

  const transport = (o: { binary?: boolean; grpcWeb?: boolean; headers?: Record<string, string> } = {}) => {
    const headers = o.headers ?? {};
    const make = o.grpcWeb ? createGrpcWebTransport : createConnectTransport;
    return make({
      baseUrl: url,
      httpVersion: "1.1",
      useBinaryFormat: o.binary ?? false,
      acceptCompression: [],
      interceptors: [
        (next) => (req) => {
          for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
          return next(req);
        },
      ],
    });
  };
  const json = transport();
  const bin = transport({ binary: true });
  let stopped: Promise<number | null> | undefined;
  /** Processes that outlived the daemon, as "pid:starttime cmdline". */
  let leftBehind: string[] = [];
  const stop = (signal: NodeJS.Signals = "SIGTERM") => {
    stopped ??= (async () => {
      const ownChildrenBefore = new Set(childrenOf(process.pid));
      const daemonTree = descendantsOf(child.pid as number).map(identity).filter((id) => id !== undefined);
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timer);
      liveDaemons.delete(child.pid as number);
      // Orphans of the daemon are now children of ours, in a session or group the daemon (or its
      // children) made; the test's own helpers and other daemons share our process group. With
      // another daemon still running, only the children that appeared during this stop count.
      const orphans = isSubreaper
        ? childrenOf(process.pid).filter((pid) => {
            const f = statFields(pid);
            if (!f || Number(f[2]) === ownGroup || pid === child.pid) return false;
            if (Number(f[19]) < daemonStart) return false;
            return liveDaemons.size === 0 || !ownChildrenBefore.has(pid);
          })
        : [];
      const survivors = [
        ...orphans.map(identity),
        ...daemonTree.filter((id) => identity(Number(id.split(":")[0])) === id),
      ].filter((id): id is string => id !== undefined);
      leftBehind = [...new Set(survivors)].map((id) => `${id} ${cmdline(Number(id.split(":")[0]))}`);
      // Never leave them running for the next test, whatever the assertion says.
      for (const id of survivors) {
        try {
          process.kill(Number(id.split(":")[0]), "SIGKILL");
        } catch {
          // gone
        }
      }
      return code;
    })();
    return stopped;
  };

  return {
    runtime: options.runtime,
    port,
    pid: child.pid as number,
    url,
    logs,
    child,
    process: createClient(Process, json),
    filesystem: createClient(Filesystem, json),
    binary: { process: createClient(Process, bin), filesystem: createClient(Filesystem, bin) },
    transport,
    fetch: (path, init) => fetch(`${url}${path}`, init),
    sandbox: async (o = {}) =>
      o.envdAccessToken === undefined
        ? Sandbox.create({ debug: true, sandboxUrl: url })
        : // Sandbox.create in debug mode drops envdAccessToken (it builds the sandbox from the
          // connection options only), so build it as create does, with the token.
          new Sandbox({ debug: true, sandboxUrl: url, sandboxId: "debug_sandbox_id", envdVersion: "99.99.99", envdAccessToken: o.envdAccessToken }),
    stop,
    async [Symbol.asyncDispose]() {
      const code = await stop();
      if (code !== 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, 1_000)))]);
        clearTimeout(timer);
        const last = logs.slice(-5).map((l) => JSON.stringify(l)).join("\n");
        throw new Error(`daemon exited with ${code ?? `signal ${exitSignal}`}: ${stderr.join("")}\nlast log lines:\n${last}`);
      }
      if (leftBehind.length > 0) throw new Error(`daemon left processes behind: ${leftBehind.join(", ")}`);
    },
    leftBehind: () => leftBehind,
  };
}

/** Live (not zombie) direct children of `pid`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(Number(name));
    if (fields && Number(fields[1]) === pid && fields[0] !== "Z" && fields[0] !== "X") out.push(Number(name));
  }
  return out;
}

/** `/proc/<pid>/stat` from the state field on (state, ppid, pgrp, …), or undefined if gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** "pid:starttime" of a live process (pids are reused quickly on a busy machine), else undefined. */
export function identity(pid: number): string | undefined {
  const fields = statFields(pid);
  if (!fields || fields[0] === "Z" || fields[0] === "X") return undefined;
  return `${pid}:${fields[19]}`;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
  } catch {
    return "?";
  }
}

/** pids whose parent chain leads to `pid` (read from /proc). */
export function descendantsOf(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(name), ppid);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  for (const [child, parent] of parents) {
    let p: number | undefined = parent;
    for (let depth = 0; p !== undefined && p > 1 && depth < 64; depth++) {
      if (p === pid) {
        out.push(child);
        break;
      }
      p = parents.get(p);
    }
  }
  return out;
}

/** The status of one GET over a new HTTP/2 connection (prior knowledge, h2c); rejects on any error. */
export function http2Status(url: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connectHttp2(url);
    const fail = (err: unknown) => {
      s.destroy();
      reject(err);
    };
    s.once("error", fail);
    const r = s.request({ ":path": path });
    r.once("error", fail);
    r.once("response", (h) => {
      r.resume();
      r.once("end", () => {
        s.close();
        resolve(Number(h[":status"]));
      });
    });
    r.end();
  });
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs a command to its end through Start and collects everything it printed. */
export async function runToEnd(
  client: Client<typeof Process>,
  req: Parameters<Client<typeof Process>["start"]>[0],
  options?: Parameters<Client<typeof Process>["start"]>[1],
) {
  let pid = 0;
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const pty: Buffer[] = [];
  let end: { exitCode: number; exited: boolean; status: string; error?: string | undefined } | undefined;
  const kinds: string[] = [];
  for await (const res of client.start(req, options)) {
    const ev = res.event?.event;
    if (!ev) continue;
    kinds.push(ev.case ?? "none");
    if (ev.case === "start") pid = ev.value.pid;
    else if (ev.case === "data") {
      const out = ev.value.output;
      if (out.case === "stdout") stdout.push(Buffer.from(out.value));
      if (out.case === "stderr") stderr.push(Buffer.from(out.value));
      if (out.case === "pty") pty.push(Buffer.from(out.value));
    } else if (ev.case === "end") end = ev.value;
  }
  return {
    pid,
    stdout: Buffer.concat(stdout).toString(),
    stderr: Buffer.concat(stderr).toString(),
    pty: Buffer.concat(pty).toString(),
    end,
    kinds,
  };
}
