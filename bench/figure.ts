/**
 * One figure against a fresh daemon, while iterating (`npm run bench` runs them all, with floors
 * and the OpenSSH peer). Needs root (the bench user). Prints the figure's raw result as JSON.
 *
 *   node bench/figure.ts streams [--runtime bun|node] [--n 200] [--executable dist/envd]
 *   node bench/figure.ts idle | roundtrip | transfer | throughput
 *
 * `--env NAME=VALUE` (repeatable) adds to the daemon's environment, e.g. an allocator option.
 */
import { createClient } from "@connectrpc/connect";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Process } from "../src/gen/process/process_pb.js";
import { type Runtime, startDaemon } from "../test/e2e/harness.ts";
import { createBenchUser } from "./lib/bench-user.ts";
import { memoryOf, sleep } from "./lib/measure.ts";
import { measureOursRoundTrip } from "./figures/round-trip.ts";
import { measureOursStreams } from "./figures/streams.ts";
import { measureOursThroughput } from "./figures/throughput.ts";
import { makeSourceFile, measureOursTransfer } from "./figures/transfer.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runtime: { type: "string", default: "bun" },
    n: { type: "string" },
    bytes: { type: "string" },
    executable: { type: "string" },
    settle: { type: "string", default: "10000" },
    env: { type: "string", multiple: true, default: [] },
  },
});
const figure = positionals[0] ?? "streams";
const runtime = values.runtime as Runtime;
using user = createBenchUser();
const env = Object.fromEntries(values.env.map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
await using envd = await startDaemon({ runtime, env, ...(values.executable ? { executable: values.executable } : {}) });
const sbx = await envd.sandbox();
const auth = { authorization: `Basic ${Buffer.from(`${user.name}:`).toString("base64")}` };
await sleep(2000);
const idle = memoryOf(envd.pid);
let result: unknown;
switch (figure) {
  case "idle":
    result = {};
    break;
  case "streams":
    result = await measureOursStreams(envd.pid, sbx, user.name, Number(values.n ?? 200), envd.url);
    break;
  case "roundtrip":
    result = await measureOursRoundTrip(sbx, createClient(Process, envd.transport({ headers: auth })), user.name, Number(values.n ?? 300));
    break;
  case "throughput": {
    const bytes = Number(values.bytes ?? 2 ** 30);
    const json = await measureOursThroughput(envd.pid, createClient(Process, envd.transport({ headers: auth })), bytes, 1);
    const binary = await measureOursThroughput(envd.pid, createClient(Process, envd.transport({ binary: true, headers: auth })), bytes, 1);
    result = { json, binary };
    break;
  }
  case "transfer": {
    const bytes = Number(values.bytes ?? 2 ** 30);
    const src = join("/var/tmp", `envd-figure-src-${process.pid}`);
    const local = join("/var/tmp", `envd-figure-local-${process.pid}`);
    makeSourceFile(src, bytes);
    try {
      result = await measureOursTransfer(envd.pid, envd.url, sbx, user.name, src, join(user.home, "transfer.bin"), local, bytes, 1);
    } finally {
      for (const f of [src, local]) await import("node:fs").then((fs) => fs.rmSync(f, { force: true }));
    }
    break;
  }
  default:
    throw new Error(`unknown figure ${figure}`);
}
await sleep(Number(values.settle));
const after = memoryOf(envd.pid);
const heapLog = envd.logs.filter((l) => l.component === "heap");
process.stdout.write(`${JSON.stringify({ figure, runtime, idle, result, after, heapLog }, null, 1)}\n`);
