/**
 * Start until `/health` answers: from spawning the runtime to the first 2xx on GET /health,
 * polled every millisecond on a port chosen beforehand.
 *  - floor: the same runtime starting a bare `node:http` server that answers every request
 *    (bench/lib/bare-health.ts), timed the same way;
 *  - ours: `src/main.ts` under the same runtime.
 */
import { spawn } from "node:child_process";
import { request } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT, type Runtime } from "../../test/e2e/harness.ts";
import { median, sleep } from "../lib/measure.ts";

const BARE = join(fileURLToPath(new URL("../lib/", import.meta.url)), "bare-health.ts");
const MAIN = join(ROOT, "src", "main.ts");

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/health", agent: false }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300);
    });
    req.once("error", () => resolve(false));
    req.end();
  });
}

/** One start: spawn, poll /health until 2xx, SIGTERM. Returns ms from spawn to the answer. */
async function startOnce(runtime: Runtime, script: string, args: string[]): Promise<number> {
  const port = await freePort();
  const bin = join(ROOT, "node_modules", ".bin", runtime);
  const a = performance.now();
  const child = spawn(bin, [script, ...args.map((x) => x.replace("{port}", String(port)))], {
    stdio: "ignore",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
  });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${script} under ${runtime} exited ${child.exitCode} before /health answered`);
      if (await healthy(port)) return performance.now() - a;
      if (performance.now() - a > 30_000) throw new Error(`${script} under ${runtime}: /health did not answer in 30 s`);
      await sleep(1);
    }
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

export interface Startup {
  medianMs: number;
  runsMs: number[];
}

async function measure(runtime: Runtime, script: string, args: string[], n: number): Promise<Startup> {
  const runsMs: number[] = [];
  for (let i = 0; i < n; i++) runsMs.push(await startOnce(runtime, script, args));
  return { medianMs: median(runsMs), runsMs };
}

export const measureBareStart = (runtime: Runtime, n: number) => measure(runtime, BARE, ["{port}"], n);

export const measureOursStart = (runtime: Runtime, n: number) =>
  measure(runtime, MAIN, ["--port", "{port}", "--host", "127.0.0.1", "--isnotfc"], n);
