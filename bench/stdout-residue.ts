/**
 * What stays after the bench's stdout bursts: a daemon (from source unless --executable), a small
 * soak so the trimmer has sampled, then 1 GiB JSON ×3 and binary ×3 as the bench runs them, then
 * memory every 5 s for 45 s, and the trimmer's log (RSS/anonymous MiB; times from the last burst's end).
 * Needs root (the bench user).
 *
 *   node bench/stdout-residue.ts [--executable dist/envd] [--reps 3] [--env NAME=VALUE]
 */
import { createClient } from "@connectrpc/connect";
import { parseArgs } from "node:util";
import { Process } from "../src/gen/process/process_pb.js";
import { startDaemon } from "../test/e2e/harness.ts";
import { createBenchUser } from "./lib/bench-user.ts";
import { memoryOf, sleep } from "./lib/measure.ts";
import { measureOursThroughput } from "./figures/throughput.ts";
import { soak } from "./figures/round-trip.ts";

const { values } = parseArgs({ options: { executable: { type: "string" }, reps: { type: "string", default: "3" }, env: { type: "string", multiple: true, default: [] } } });
const env = Object.fromEntries(values.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
using user = createBenchUser();
await using envd = await startDaemon({ runtime: "bun", env: { ENVD_LOG_LEVEL: "debug", ...env }, ...(values.executable ? { executable: values.executable } : {}) });
const auth = { authorization: `Basic ${Buffer.from(`${user.name}:`).toString("base64")}` };
const json = createClient(Process, envd.transport({ headers: auth }));
const binary = createClient(Process, envd.transport({ binary: true, headers: auth }));
const sbx = await envd.sandbox();
await sleep(2000);
const idle = memoryOf(envd.pid);
await soak(sbx, user.name, 100);
await sleep(8000);
const afterSoak = memoryOf(envd.pid);
const t0 = Date.now();
const reps = Number(values.reps);
const j = await measureOursThroughput(envd.pid, json, 2 ** 30, reps);
const b = await measureOursThroughput(envd.pid, binary, 2 ** 30, reps);
console.log(`json ${j.mbps.toFixed(0)} MB/s cpu ${j.daemonCpuPerGiB.toFixed(2)} peak ${j.peakRssMiB.toFixed(0)}; binary ${b.mbps.toFixed(0)} MB/s cpu ${b.daemonCpuPerGiB.toFixed(2)} peak ${b.peakRssMiB.toFixed(0)}`);
const end = Date.now();
const samples: string[] = [];
for (let i = 1; i <= 9; i++) {
  await sleep(5000);
  const m = memoryOf(envd.pid);
  samples.push(`+${i * 5}s ${m.rssMiB.toFixed(1)}/${m.anonMiB.toFixed(1)}`);
}
console.log(`idle ${idle.rssMiB.toFixed(1)}/${idle.anonMiB.toFixed(1)} afterSoak ${afterSoak.rssMiB.toFixed(1)}/${afterSoak.anonMiB.toFixed(1)} stdout ${((end - t0) / 1000).toFixed(0)} s`);
console.log(samples.join("  "));
for (const l of envd.logs.filter((l) => l.component === "heap" && l.msg !== "heap trimmer sampling")) {
  console.log(`${((Date.parse(String(l.ts)) - end) / 1000).toFixed(1)}s`, JSON.stringify({ ...l, ts: undefined, level: undefined, component: undefined }));
}
