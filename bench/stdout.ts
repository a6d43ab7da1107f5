/**
 * The stdout throughput figure alone (the same measurement `npm run bench` takes), for iterating
 * on the output path without the 15-minute suite:
 *
 *   node bench/stdout.ts [--runtimes bun,node] [--bytes N] [--reps N] [--codecs json,binary]
 *     [--glibc-tunables glibc.cpu.x86_rep_movsb_threshold=4294967295]
 *
 * Prints one line per runtime and codec: MB/s (median), daemon and client CPU s/GiB, peak RSS.
 */
import { createClient } from "@connectrpc/connect";
import { parseArgs } from "node:util";
import { Process } from "../src/gen/process/process_pb.js";
import { type Runtime, startDaemon } from "../test/e2e/harness.ts";
import { measureOursThroughput } from "./figures/throughput.ts";

const { values } = parseArgs({
  options: {
    runtimes: { type: "string", default: "bun,node" },
    codecs: { type: "string", default: "json,binary" },
    bytes: { type: "string", default: String(2 ** 30) },
    reps: { type: "string", default: "3" },
    /** GLIBC_TUNABLES for the daemon, e.g. glibc.cpu.x86_rep_movsb_threshold=4294967295 (docs/benchmarks.md). */
    "glibc-tunables": { type: "string" },
  },
});
const bytes = Number(values.bytes);
const reps = Number(values.reps);
for (const runtime of values.runtimes.split(",") as Runtime[]) {
  const tunables = values["glibc-tunables"];
  await using envd = await startDaemon({ runtime, env: tunables ? { GLIBC_TUNABLES: tunables } : {} });
  for (const codec of values.codecs.split(",")) {
    const client = createClient(Process, envd.transport({ binary: codec === "binary", headers: { authorization: `Basic ${Buffer.from("root:").toString("base64")}` } }));
    const r = await measureOursThroughput(envd.pid, client, bytes, reps);
    console.log(
      `${runtime.padEnd(4)} ${codec.padEnd(6)} ${r.mbps.toFixed(0).padStart(5)} MB/s  (reps ${r.reps.map((x) => x.toFixed(0)).join(", ")})  daemon ${r.daemonCpuPerGiB.toFixed(2)} CPU s/GiB  client ${r.clientCpuPerGiB.toFixed(2)} CPU s/GiB  peak RSS ${r.peakRssMiB.toFixed(0)} MiB`,
    );
  }
}
