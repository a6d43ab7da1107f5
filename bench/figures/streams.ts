/**
 * 200 concurrent streaming commands, all started at once through the e2b SDK (`commands.run` in
 * the background with `onStdout`, then `wait()`), each printing 100 lines 10 ms apart from one Perl
 * process (a shell loop around `sleep` would fork 20,000 processes and measure the fork storm, not
 * the daemon). Reports how many completed with every line and exit 0, the start latency (call →
 * start event) and first-byte latency (call → first stdout callback) p50/p99, the wall time, and
 * the daemon's peak RSS.
 */
import type { Sandbox } from "e2b";
import { PeakSampler, type Percentiles, percentiles } from "../lib/measure.ts";

export interface OursStreams {
  streams: number;
  completed: number;
  failures: string[];
  startMs: Percentiles;
  firstByteMs: Percentiles;
  wallS: number;
  peakRssMiB: number;
}

const LINES = 100;
const SCRIPT = `perl -e '$| = 1; for my $i (1..${LINES}) { print "line $i\\n"; select(undef, undef, undef, 0.01) }'`;

export async function measureOursStreams(pid: number, sbx: Sandbox, user: string, streams: number): Promise<OursStreams> {
  const sampler = new PeakSampler(pid);
  const firstByte: number[] = [];
  const started: number[] = [];
  const failures: string[] = [];
  const t0 = performance.now();
  const results = await Promise.allSettled(
    Array.from({ length: streams }, async () => {
      const a = performance.now();
      let first = true;
      const handle = await sbx.commands.run(SCRIPT, {
        user,
        background: true,
        timeoutMs: 300_000,
        onStdout: () => {
          if (first) firstByte.push(performance.now() - a);
          first = false;
        },
      });
      started.push(performance.now() - a);
      const r = await handle.wait();
      const lines = r.stdout.split("\n").filter(Boolean).length;
      if (r.exitCode !== 0 || lines !== LINES) throw new Error(`exit ${r.exitCode}, ${lines} lines`);
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  for (const r of results) if (r.status === "rejected") failures.push(String(r.reason).slice(0, 200));
  return {
    streams,
    completed: results.filter((r) => r.status === "fulfilled").length,
    failures: [...new Set(failures)].slice(0, 5),
    startMs: percentiles(started),
    firstByteMs: percentiles(firstByte),
    wallS,
    peakRssMiB: sampler.stop().peakMiB,
  };
}
