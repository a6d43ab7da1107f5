/**
 * Start storm, daemon only (diagnostic): `n` Connect Start requests of `cmd` sent at once over
 * HTTP/1.1 (one connection each, as the SDK does when its pool is busy), while GET /health is asked
 * every 10 ms on its own connection. Prints /health p50/p99/max and the storm's wall time.
 *
 *   node bench/storm.ts [--runtime bun|node] [--n 200] [--cmd /bin/true] [--executable dist/envd]
 */
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process } from "../src/gen/process/process_pb.js";
import { type Runtime, startDaemon } from "../test/e2e/harness.ts";
import { probeHealth } from "./figures/streams.ts";
import { percentiles, sleep } from "./lib/measure.ts";

const { values } = parseArgs({
  options: {
    runtime: { type: "string", default: "bun" },
    n: { type: "string", default: "200" },
    cmd: { type: "string", default: "/bin/true" },
    executable: { type: "string" },
    rounds: { type: "string", default: "3" },
  },
});
await using envd = await startDaemon({ runtime: values.runtime as Runtime, ...(values.executable ? { executable: values.executable } : {}) });
const client = createClient(Process, createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1", acceptCompression: [] }));
await sleep(1000);
for (let r = 0; r < Number(values.rounds); r++) {
  const health = probeHealth(envd.url);
  await sleep(100);
  const a = performance.now();
  const started: number[] = [];
  await Promise.all(
    Array.from({ length: Number(values.n) }, async () => {
      const t = performance.now();
      for await (const res of client.start({ process: { cmd: values.cmd } })) {
        if (res.event?.event.case === "start") started.push(performance.now() - t);
      }
    }),
  );
  const wall = performance.now() - a;
  await sleep(100);
  const h = await health.stop();
  const s = percentiles(started);
  process.stdout.write(
    `${values.runtime} n=${values.n}: wall ${wall.toFixed(0)} ms; started p50 ${s.p50.toFixed(0)} p99 ${s.p99.toFixed(0)} ms; /health p50 ${h.p50.toFixed(1)} p99 ${h.p99.toFixed(1)} max ${h.max.toFixed(0)} ms (${h.n})\n`,
  );
}
