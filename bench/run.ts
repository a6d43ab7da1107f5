/**
 * `npm run bench`: our daemon against the physical floor and against OpenSSH, in one run.
 *
 *   node bench/run.ts [--smoke] [--runtimes bun,node] [--no-peer] [--out FILE] [--sizes JSON]
 *
 * Measures the floors and the OpenSSH peer first, then one pass over our daemon per runtime
 * (bench/ours.ts), prints the table (Markdown) and writes every raw number as JSON
 * (bench/results/latest.json by default). Needs root: it creates a throwaway user and runs sshd.
 * `--smoke` runs every figure with tiny sizes in well under a minute; its numbers mean nothing.
 * `--sizes '{"streamBytes":268435456}'` overrides single sizes (bench/sizes.ts) while iterating.
 * The exit code reflects only whether the suite ran, never whether a target was met.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, type Runtime } from "../test/e2e/harness.ts";
import { createBenchUser, removeBenchUser } from "./lib/bench-user.ts";
import { ensureOpenSsh, startOpenSsh } from "./lib/openssh.ts";
import { sshdMemory } from "./figures/memory.ts";
import { measureSpawnFloor, measureSshExec } from "./figures/round-trip.ts";
import { buildBinary, measureBareStart, measureCompiledStarts } from "./figures/startup.ts";
import { measurePipeFloor, measureSshThroughput } from "./figures/throughput.ts";
import { makeSourceFile, measureScp, measureSdkBare, measureTransferFloor } from "./figures/transfer.ts";
import { type FuzzBurst, measureFuzzBurst } from "./figures/fuzz-burst.ts";
import { type OursRun, runOurs, type Unavailable } from "./ours.ts";
import { buildRows, type Floors, formatTable, fuzzRow, type Peer, type Results } from "./report.ts";
import { FULL, type Sizes, SMOKE } from "./sizes.ts";
import { sleep } from "./lib/measure.ts";

const { values } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    runtimes: { type: "string", default: "bun,node" },
    "no-peer": { type: "boolean", default: false },
    out: { type: "string", default: join(ROOT, "bench", "results", "latest.json") },
    sizes: { type: "string", default: "{}" },
  },
});
const sizes: Sizes = { ...(values.smoke ? SMOKE : FULL), ...(JSON.parse(values.sizes) as Partial<Sizes>) };
const runtimes = values.runtimes.split(",").map((s) => s.trim()) as Runtime[];
for (const rt of runtimes) if (rt !== "bun" && rt !== "node") throw new Error(`unknown runtime ${rt} (bun or node)`);

const started = Date.now();
const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

function versionOf(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return (r.stdout || r.stderr || "").trim().split("\n")[0] ?? "";
}

function machine() {
  const meminfo = readFileSync("/proc/meminfo", "utf8");
  const bin = join(ROOT, "node_modules", ".bin");
  return {
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? "",
    memTotalGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    memAvailableGiB: Number((Number(/MemAvailable:\s+(\d+)/.exec(meminfo)?.[1]) / 2 ** 20).toFixed(1)),
    kernel: versionOf("uname", ["-srm"]),
    bun: versionOf(join(bin, "bun"), ["--version"]),
    node: versionOf(join(bin, "node"), ["--version"]),
    client: `node ${process.version}`,
    e2bSdk: (JSON.parse(readFileSync(join(ROOT, "node_modules", "e2b", "package.json"), "utf8")) as { version: string }).version,
    commit: versionOf("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]),
  };
}

const failures: string[] = [];
const work = mkdtempSync("/var/tmp/envd-bench-");
const src = join(work, "source.bin");
const local = join(work, "local.bin");
const meta = { date: new Date().toISOString(), mode: values.smoke ? "smoke" : "full", sizes, machine: machine(), loadBefore: loadavg() };
// Interrupted: remove what the run created (its children get the terminal's signal too).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    rmSync(work, { recursive: true, force: true });
    removeBenchUser();
    process.exit(130);
  });
}
{
  using user = createBenchUser();
  try {
    log(`floors: fork+exec+wait ×${sizes.spawnFloorRuns}, pipe, disk copy, loopback TCP, bare runtime start`);
    const spawn = measureSpawnFloor(sizes.spawnFloorRuns, user.name);
    const pipeMBps = await measurePipeFloor(sizes.streamBytes, sizes.throughputReps);
    makeSourceFile(src, sizes.transferBytes);
    const transfer = await measureTransferFloor(src, join(work, "copy.bin"), sizes.transferBytes, Math.max(1, sizes.transferReps));
    const bareStart: Floors["bareStart"] = {};
    for (const rt of runtimes) bareStart[rt] = await measureBareStart(rt, sizes.startups, sizes.idleSettleMs);
    // The SDK against a bare /files in each runtime: the client's own ceiling (diagnostic).
    const sdkBare: Floors["sdkBare"] = {};
    for (const rt of runtimes) {
      sdkBare[rt] = await measureSdkBare(rt, src, join(work, "bare-remote.bin"), local, sizes.transferBytes, Math.max(1, sizes.transferReps)).catch(
        (err: unknown) => ({ unavailable: `SDK against a bare /files failed: ${String(err).slice(0, 160)}` }),
      );
    }
    const floors: Floors = { spawn, pipeMBps, transfer, bareStart, sdkBare };

    let peer: Peer | Unavailable;
    const missing = values["no-peer"] ? "skipped (--no-peer)" : ensureOpenSsh(log, !values.smoke);
    if (missing) {
      peer = { unavailable: missing };
    } else {
      peer = await measurePeer(user.name, sizes, src, local).catch((err: unknown) => {
        failures.push(`OpenSSH peer: ${String(err)}`);
        return { unavailable: `failed: ${String(err).slice(0, 120)}` };
      });
    }

    const ours: Partial<Record<Runtime, OursRun>> = {};
    for (const rt of runtimes) {
      const run = await runOurs(rt, sizes, user, { src, local }, log);
      ours[rt] = run;
      failures.push(...run.failures.map((f) => `${rt}: ${f}`));
    }

    // Memory after abuse (bench/figures/fuzz-burst.ts): idle, after 10,000 malformed requests, 60 s later.
    const fuzzBurst: Partial<Record<Runtime, FuzzBurst | Unavailable>> = {};
    for (const rt of runtimes) {
      log(`${rt}: fuzz burst`);
      fuzzBurst[rt] = await measureFuzzBurst(rt, values.smoke ? { requests: 200, restMs: 1_000 } : { requests: 10_000, restMs: 60_000 }).catch((err: unknown) => {
        failures.push(`${rt}: fuzz burst: ${String(err)}`);
        return { unavailable: `failed: ${String(err).slice(0, 120)}` };
      });
    }

    let binary: Results["binary"] = { unavailable: "Bun not in --runtimes" };
    if (runtimes.includes("bun")) {
      log("compiled binary: npm run build, then start until /health");
      const out = join(work, "envd");
      const failed = buildBinary(out);
      if (failed) binary = { unavailable: failed };
      else {
        // The binary and the bare server compiled the same way, started in turn.
        binary = await measureCompiledStarts(out, join(work, "bare-health"), sizes.startups, sizes.idleSettleMs);
      }
    }

    const results: Results = { sizes, floors, peer, ours, binary };
    const rows = [...buildRows(results), fuzzRow(fuzzBurst)];
    const table = formatTable(rows);
    const m = meta.machine;
    process.stdout.write(
      `\n${m.nproc} × ${m.cpu}, ${m.memTotalGiB} GiB, ${m.kernel}; bun ${m.bun}, node ${m.node}; ${meta.mode} run, ` +
        `load ${meta.loadBefore.map((x) => x.toFixed(2)).join(" ")} before\n\n${table}\n`,
    );
    mkdirSync(dirname(values.out), { recursive: true });
    writeFileSync(values.out, `${JSON.stringify({ meta: { ...meta, loadAfter: loadavg(), seconds: (Date.now() - started) / 1000 }, failures, results, rows, fuzzBurst }, null, 2)}\n`);
    log(`wrote ${values.out}`);
    for (const f of failures) log(`FAILED ${f}`);
    if (failures.length > 0) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function measurePeer(userName: string, sizes: Sizes, src: string, local: string): Promise<Peer> {
  await using ssh = await startOpenSsh(userName);
  log(`peer: ${ssh.version} on 127.0.0.1:${ssh.port}`);
  await sleep(sizes.idleSettleMs);
  const memory = sshdMemory(ssh.pid, ssh.connectionPids());
  const execMs = measureSshExec(ssh.ssh, sizes.sshExecRuns);
  const throughputMBps = await measureSshThroughput(ssh.ssh, sizes.streamBytes, sizes.throughputReps);
  const remote = `/home/${userName}/scp.bin`;
  const scp = await measureScp(ssh.scp, ssh.host, src, remote, local, sizes.transferBytes, sizes.transferReps);
  rmSync(remote, { force: true });
  return { version: ssh.version, memory, execMs, throughputMBps, scp };
}
