/**
 * The bench's two soaks (1,000 SDK commands each, 60 s rest) on one daemon from source at debug
 * level: RSS 60 s after each, and every trim with its time. Needs root (the bench user).
 *
 *   node bench/soak-twice.ts
 */
import { startDaemon } from "../test/e2e/harness.ts";
import { createBenchUser } from "./lib/bench-user.ts";
import { memoryOf, sleep } from "./lib/measure.ts";
import { soak } from "./figures/round-trip.ts";

using user = createBenchUser();
await using envd = await startDaemon({ runtime: "bun", env: { ENVD_LOG_LEVEL: "debug" } });
const sbx = await envd.sandbox();
await sleep(2000);
const t0 = Date.now();
const idle = memoryOf(envd.pid);
await soak(sbx, user.name, 1000);
const e1 = Date.now();
await sleep(60_000);
const a1 = memoryOf(envd.pid);
await soak(sbx, user.name, 1000);
const e2 = Date.now();
await sleep(60_000);
const a2 = memoryOf(envd.pid);
console.log(`idle ${idle.rssMiB.toFixed(1)} after1 ${a1.rssMiB.toFixed(1)} after2 ${a2.rssMiB.toFixed(1)} (soak ends at ${((e1 - t0) / 1000).toFixed(0)} s, ${((e2 - t0) / 1000).toFixed(0)} s)`);
for (const l of envd.logs.filter((l) => l.component === "heap" && l.msg === "heap trimmed")) {
  console.log(`${((Date.parse(String(l.ts)) - t0) / 1000).toFixed(1)}s`, JSON.stringify({ ...l, ts: undefined, level: undefined, component: undefined, msg: undefined }));
}
