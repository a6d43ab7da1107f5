/**
 * Start until `/health` answers: from spawning the process to the first 2xx on GET /health,
 * polled every millisecond on a port chosen beforehand. Also the idle RSS of one of the starts.
 *  - floor: the same runtime starting a bare `node:http` server that answers every request
 *    (bench/lib/bare-health.ts), timed the same way;
 *  - ours: `src/main.ts` under Bun and Node 26, and the compiled binary (`npm run build`), which
 *    is what ships.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT, type Runtime } from "../../test/e2e/harness.ts";
import { type FirstRequests, firstRequests, http1 } from "../lib/first-requests.ts";
import { dropPageCache, freePort, median, memoryOf, type Memory, sleep } from "../lib/measure.ts";

const BARE = join(fileURLToPath(new URL("../lib/", import.meta.url)), "bare-health.ts");
const MAIN = join(ROOT, "src", "main.ts");
const DAEMON_ARGS = ["--port", "{port}", "--host", "127.0.0.1", "--isnotfc"];
/** Untimed starts with a cold page cache whose median idle RSS is reported. */
const COLD_STARTS = 3;

/**
 * One start: spawn, poll /health until 2xx, optionally read the idle RSS, time the first request
 * of each kind (bench/lib/first-requests.ts), SIGTERM.
 */
async function startOnce(
  argv: string[],
  idleSettleMs: number | undefined,
): Promise<{ ms: number; idle: Memory | undefined; first: FirstRequests }> {
  const port = await freePort();
  const args = argv.slice(1).map((x) => x.replace("{port}", String(port)));
  const a = performance.now();
  const child = spawn(argv[0] as string, args, { stdio: "ignore", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${argv.join(" ")} exited ${child.exitCode} before /health answered`);
      const status = await http1(port, "GET", "/health");
      if (status >= 200 && status < 300) break;
      if (performance.now() - a > 30_000) throw new Error(`${argv.join(" ")}: /health did not answer in 30 s`);
      await sleep(1);
    }
    const ms = performance.now() - a;
    let idle: Memory | undefined;
    if (idleSettleMs !== undefined) {
      await sleep(idleSettleMs);
      idle = memoryOf(child.pid as number);
    }
    const first = await firstRequests(port);
    return { ms, idle, first };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

export interface Startup {
  medianMs: number;
  runsMs: number[];
  /**
   * RSS `idleSettleMs` after /health answered: the median of COLD_STARTS extra starts (not timed),
   * each made with a cold page cache, as a VM boots: how many of the binary's file-backed pages a
   * process maps depends on the page cache's folios, which a freshly written binary has in other
   * sizes than one read from disk (±3 MiB between builds of the same source, warm).
   */
  idle: Memory;
  /** Whether the page cache could be dropped for that start (root). */
  coldCache: boolean;
  /**
   * The first request of each kind after each start (the first start after its RSS reading, the
   * others right after /health): per kind the median ms, and every status seen. The bare server
   * answers 204 to all.
   */
  first: Record<string, { ms: number; statuses: number[] }>;
}

/**
 * Starts each command in turn (a, b, a, b, …: the cold starts first, then the timed ones), so that
 * whatever else the machine does hits all of them alike. Measured one block after the other, the
 * compiled pair's start ratio moved from 1.06× to 1.32× between two full runs of the same code.
 */
async function measureInTurn(argvs: string[][], n: number, idleSettleMs: number): Promise<Startup[]> {
  const state = argvs.map(() => ({ runsMs: [] as number[], firsts: [] as FirstRequests[], readings: [] as Memory[], coldCache: true }));
  // The median of COLD_STARTS readings: the same binary varies by ~0.5 MiB from one cold start
  // to the next, which is most of the margin of a 1.3x target.
  for (let i = 0; i < COLD_STARTS; i++) {
    for (const [k, argv] of argvs.entries()) {
      const st = state[k] as (typeof state)[number];
      st.coldCache = dropPageCache() && st.coldCache;
      const { idle } = await startOnce(argv, idleSettleMs);
      if (idle) st.readings.push(idle);
    }
  }
  for (let i = 0; i < n; i++) {
    for (const [k, argv] of argvs.entries()) {
      const st = state[k] as (typeof state)[number];
      const r = await startOnce(argv, undefined);
      st.runsMs.push(r.ms);
      st.firsts.push(r.first);
    }
  }
  return state.map(({ runsMs, firsts, readings, coldCache }) => {
    const idle = readings.sort((a, b) => a.rssMiB - b.rssMiB)[Math.floor(readings.length / 2)];
    const kinds = Object.keys(firsts[0] ?? {});
    const first = Object.fromEntries(
      kinds.map((k) => [k, { ms: median(firsts.map((f) => f[k]?.ms ?? Number.NaN)), statuses: [...new Set(firsts.map((f) => f[k]?.status ?? 0))] }]),
    );
    return { medianMs: median(runsMs), runsMs, idle: idle as Memory, coldCache, first };
  });
}

const measure = async (argv: string[], n: number, idleSettleMs: number): Promise<Startup> =>
  (await measureInTurn([argv], n, idleSettleMs))[0] as Startup;

const runtimeBin = (runtime: Runtime) => join(ROOT, "node_modules", ".bin", runtime);

export const measureBareStart = (runtime: Runtime, n: number, idleSettleMs: number) =>
  measure([runtimeBin(runtime), BARE, "{port}"], n, idleSettleMs);

export const measureOursStart = (runtime: Runtime, n: number, idleSettleMs: number) =>
  measure([runtimeBin(runtime), MAIN, ...DAEMON_ARGS], n, idleSettleMs);

/**
 * Builds the shipped binary (`npm run build` = scripts/build.sh) into `out`. Returns why not when
 * it cannot (no build script in this checkout, or the build failed).
 */
export function buildBinary(out: string): string | undefined {
  const script = join(ROOT, "scripts", "build.sh");
  if (!existsSync(script)) return "no scripts/build.sh in this checkout";
  const r = spawnSync("bash", [script], { cwd: ROOT, env: { ...process.env, ENVD_OUT: out }, encoding: "utf8" });
  if (r.status !== 0 || !existsSync(out)) return `npm run build failed: ${r.stderr.trim().split("\n").slice(-3).join(" ")}`;
  return undefined;
}

/**
 * The shipped binary and its floor, the bare server compiled the same way (`bun build --compile
 * --bytecode`, written to `bareOut`), started in turn. Without the floor (it did not compile),
 * the binary alone.
 */
export async function measureCompiledStarts(binary: string, bareOut: string, n: number, idleSettleMs: number): Promise<{ startup: Startup; bare?: Startup }> {
  const ours = [binary, ...DAEMON_ARGS];
  const r = spawnSync(runtimeBin("bun"), ["build", "--compile", "--format", "esm", "--bytecode", "--outfile", bareOut, BARE], { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0 || !existsSync(bareOut)) return { startup: await measure(ours, n, idleSettleMs) };
  const [bare, startup] = await measureInTurn([[bareOut, "{port}"], ours], n, idleSettleMs);
  return { startup: startup as Startup, bare: bare as Startup };
}
