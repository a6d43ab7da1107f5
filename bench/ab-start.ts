/**
 * Start-up A/B while iterating (not part of `npm run bench`): starts each given command in turn,
 * round after round (interleaved, so machine load hits all of them alike), and reports per
 * command the median time until /health answers, the idle RSS `--settle` ms later, and the
 * latency of the first request of each kind (`--first`): the first Filesystem RPC, the first
 * Process RPC, the first /files download and upload, the first HTTP/2 request. The first row is
 * the reference the others are divided by.
 *
 * `--cold` drops the page cache before each start (as root), as a booting VM has it: the idle RSS of
 * a compiled binary otherwise depends on how its pages got into the cache (docs/benchmarks.md).
 *
 *   node bench/ab-start.ts [--rounds 9] [--settle 2000] [--first] [--cold] 'bare=/tmp/bare {port}' \
 *     'envd=dist/envd --port {port} --host 127.0.0.1 --isnotfc'
 */
import { spawn } from "node:child_process";
import { parseArgs } from "node:util";
import { firstRequests, http1 } from "./lib/first-requests.ts";
import { dropPageCache, freePort, median, memoryOf, sleep } from "./lib/measure.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: "string", default: "9" },
    settle: { type: "string", default: "2000" },
    first: { type: "boolean", default: false },
    cold: { type: "boolean", default: false },
  },
});

async function startOnce(argv: string[], settleMs: number, first: boolean) {
  const port = await freePort();
  if (values.cold && !dropPageCache()) throw new Error("--cold: cannot drop the page cache (not root?)");
  const args = argv.slice(1).map((x) => x.replace("{port}", String(port)));
  const a = performance.now();
  const child = spawn(argv[0] as string, args, { stdio: "ignore", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${argv.join(" ")} exited ${child.exitCode}`);
      const s = await http1(port, "GET", "/health");
      if (s >= 200 && s < 300) break;
      if (performance.now() - a > 30_000) throw new Error("no /health in 30 s");
      await sleep(1);
    }
    const ms = performance.now() - a;
    await sleep(settleMs);
    const idle = memoryOf(child.pid as number);
    const f = first ? await firstRequests(port) : undefined;
    const after = first ? memoryOf(child.pid as number) : undefined;
    return { ms, idle, first: f, after };
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
}

const commands = positionals.map((p) => {
  const i = p.indexOf("=");
  return { name: p.slice(0, i), argv: p.slice(i + 1).split(" ") };
});
const rounds = Number(values.rounds);
const runs = new Map<string, Awaited<ReturnType<typeof startOnce>>[]>(commands.map((c) => [c.name, []]));
for (let r = 0; r < rounds; r++) {
  for (const c of commands) runs.get(c.name)?.push(await startOnce(c.argv, Number(values.settle), values.first));
}
const ref = commands[0]?.name ?? "";
const refStart = median(runs.get(ref)?.map((x) => x.ms) ?? []);
const refRss = median(runs.get(ref)?.map((x) => x.idle.rssMiB) ?? []);
for (const c of commands) {
  const rs = runs.get(c.name) ?? [];
  const start = median(rs.map((x) => x.ms));
  const rss = median(rs.map((x) => x.idle.rssMiB));
  const anon = median(rs.map((x) => x.idle.anonMiB));
  let line = `${c.name.padEnd(12)} start ${start.toFixed(1)} ms (${(start / refStart).toFixed(2)}×)  idle RSS ${rss.toFixed(1)} MiB anon ${anon.toFixed(1)} (${(rss / refRss).toFixed(2)}×)`;
  if (values.first && rs[0]?.first) {
    const kinds = Object.keys(rs[0].first);
    line += `\n${" ".repeat(13)}first: ${kinds
      .map((k) => `${k} ${median(rs.map((x) => x.first?.[k]?.ms ?? Number.NaN)).toFixed(1)} ms [${[...new Set(rs.map((x) => x.first?.[k]?.status))].join(",")}]`)
      .join("  ")}  RSS after ${median(rs.map((x) => x.after?.rssMiB ?? Number.NaN)).toFixed(1)} MiB`;
  }
  process.stdout.write(`${line}\n`);
}
