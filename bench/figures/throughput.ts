/**
 * stdout throughput of `head -c <bytes> /dev/zero`.
 *  - floor: `head … | cat > /dev/null` (one pipe, nothing else);
 *  - peer: `ssh host head …` over the kept connection, stdout to /dev/null;
 *  - ours: Connect `Process.Start` with the JSON codec (what the SDK uses; the SDK itself keeps all
 *    stdout in a string, which cannot hold 1 GiB) and with the binary codec, both over HTTP/1.1.
 */
import type { Client } from "@connectrpc/connect";
import type { Process } from "../../src/gen/process/process_pb.js";
import { cpuSecondsOf, median, PeakSampler, timeOnce } from "../lib/measure.ts";

const headCmd = (bytes: number) => `head -c ${bytes} /dev/zero`;

/** MB/s (10^6 bytes per second) of the bare pipe, median of `reps`. */
export async function measurePipeFloor(bytes: number, reps: number): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < reps; i++) rates.push(bytes / 1e6 / (await timeOnce(["sh", "-c", `${headCmd(bytes)} | cat > /dev/null`])));
  return median(rates);
}

export async function measureSshThroughput(ssh: string[], bytes: number, reps: number): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < reps; i++) rates.push(bytes / 1e6 / (await timeOnce([...ssh, headCmd(bytes)])));
  return median(rates);
}

export interface OursThroughput {
  mbps: number;
  /** Daemon CPU seconds per GiB moved. */
  daemonCpuPerGiB: number;
  /** Bench-process (client) CPU seconds per GiB decoded. */
  clientCpuPerGiB: number;
  peakRssMiB: number;
  reps: number[];
}

/** Streams `bytes` of zeros through Start `reps` times; checks the count and the exit code. */
export async function measureOursThroughput(pid: number, client: Client<typeof Process>, bytes: number, reps: number): Promise<OursThroughput> {
  const rates: number[] = [];
  const sampler = new PeakSampler(pid);
  const cpu0 = cpuSecondsOf(pid);
  const client0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    let got = 0;
    let code: number | undefined;
    const a = performance.now();
    for await (const res of client.start({ process: { cmd: "/bin/sh", args: ["-c", headCmd(bytes)] } })) {
      const ev = res.event?.event;
      if (ev?.case === "data" && ev.value.output.case === "stdout") got += ev.value.output.value.byteLength;
      else if (ev?.case === "end") code = ev.value.exitCode;
    }
    const s = (performance.now() - a) / 1000;
    if (got !== bytes || code !== 0) throw new Error(`throughput run got ${got} of ${bytes} bytes, exit ${code}`);
    rates.push(bytes / 1e6 / s);
  }
  const gib = (bytes * reps) / 2 ** 30;
  const c = process.cpuUsage(client0);
  return {
    mbps: median(rates),
    daemonCpuPerGiB: (cpuSecondsOf(pid) - cpu0) / gib,
    clientCpuPerGiB: (c.user + c.system) / 1e6 / gib,
    peakRssMiB: sampler.stop().peakMiB,
    reps: rates,
  };
}
