/**
 * Helpers for the control-plane suites: POST /init, a fake Firecracker metadata service, recorder
 * scripts standing in for system programs, and temporary users.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after } from "node:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Client } from "@connectrpc/connect";
import type { Process } from "../../src/gen/process/process_pb.js";
import { type Daemon, runToEnd } from "./harness.ts";

/** POSTs /init with a JSON body (or the raw string given). */
export function postInit(envd: Daemon, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return envd.fetch("/init", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    ...(signal ? { signal } : {}),
  });
}

export async function getEnvs(envd: Daemon, token?: string): Promise<Record<string, string>> {
  const res = await envd.fetch("/envs", token ? { headers: { "X-Access-Token": token } } : {});
  if (res.status !== 200) throw new Error(`/envs answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as Record<string, string>;
}

/** Runs `bash -c script` through Start and returns stdout (throws on a non-zero exit). */
export async function sh(client: Client<typeof Process>, script: string, opts: { cwd?: string; envs?: Record<string, string> } = {}, headers?: Record<string, string>) {
  const r = await runToEnd(
    client,
    { process: { cmd: "/bin/bash", args: ["-c", script], envs: opts.envs ?? {}, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) }, stdin: false },
    headers ? { headers } : undefined,
  );
  if (r.end?.exitCode !== 0) throw new Error(`${script} failed: ${r.end?.status} ${r.stderr}`);
  return r.stdout;
}

const tempDirs: string[] = [];
after(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A temporary directory, removed when the test file ends. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `envd-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

/** A script that appends its arguments (one line per call) to `<dir>/<name>.calls` and exits 0. */
export function recorder(dir: string, name: string, body = ""): { path: string; calls: () => string[] } {
  const path = join(dir, name);
  const log = join(dir, `${name}.calls`);
  writeFileSync(path, `#!/bin/sh\necho "$@" >> '${log}'\n${body}\nexit 0\n`);
  chmodSync(path, 0o755);
  return {
    path,
    calls: () => {
      try {
        return readFileSync(log, "utf8").split("\n").filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}

let userSeq = 0;

/** A system user with a home directory, removed on dispose. */
export function tempUser(prefix = "e2ectl"): { name: string; home: string; uid: number } & Disposable {
  const name = `${prefix}${process.pid % 100000}x${userSeq++}`;
  execFileSync("useradd", ["-m", "-s", "/bin/bash", name]);
  const home = execFileSync("getent", ["passwd", name]).toString().split(":")[5] as string;
  const uid = Number(execFileSync("id", ["-u", name]).toString().trim());
  return {
    name,
    home,
    uid,
    [Symbol.dispose]() {
      try {
        execFileSync("userdel", ["-r", "-f", name], { stdio: "ignore" });
      } catch {
        rmSync(home, { recursive: true, force: true });
      }
    },
  };
}

export interface FakeMmds extends AsyncDisposable {
  url: string;
  /** The metadata document served (any JSON value; a string is sent as is). */
  data: unknown;
  /** Answer the next n requests with HTTP 503. */
  failNext: number;
  /** While set, GET / waits for this promise before answering. */
  hold: Promise<void> | undefined;
  requests: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  token: string;
  /** Bodies POSTed to `<url>/logs` (the fake doubles as the log collector). */
  logs: { contentType: string | undefined; body: string }[];
}

/** A fake MMDS on 127.0.0.1: PUT /latest/api/token → token; GET / with that token → data. */
export async function startFakeMmds(data: unknown): Promise<FakeMmds> {
  const sockets = new Set<import("node:net").Socket>();
  const fake: FakeMmds = {
    url: "",
    data,
    failNext: 0,
    hold: undefined,
    requests: [],
    token: `mmds-token-${Math.random().toString(36).slice(2)}`,
    logs: [],
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  const server = http.createServer(async (req, res) => {
    if (req.method === "POST" && req.url === "/logs") {
      let body = "";
      for await (const chunk of req) body += String(chunk);
      fake.logs.push({ contentType: req.headers["content-type"], body });
      res.writeHead(200).end();
      return;
    }
    fake.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    if (fake.failNext > 0) {
      fake.failNext--;
      res.writeHead(503).end("not yet");
      return;
    }
    if (req.method === "PUT" && req.url === "/latest/api/token") {
      if (req.headers["x-metadata-token-ttl-seconds"] === undefined) {
        res.writeHead(400).end("missing ttl");
        return;
      }
      res.writeHead(200, { "Content-Type": "text/plain" }).end(fake.token);
      return;
    }
    if (req.method === "GET" && req.url === "/") {
      if (req.headers["x-metadata-token"] !== fake.token) {
        res.writeHead(401).end("bad token");
        return;
      }
      if (fake.hold !== undefined) await fake.hold;
      const body = typeof fake.data === "string" ? fake.data : JSON.stringify(fake.data);
      res.writeHead(200, { "Content-Type": "application/json" }).end(body);
      return;
    }
    res.writeHead(404).end();
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}
