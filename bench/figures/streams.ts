/**
 * 200 concurrent streaming commands, all started at once through the e2b SDK (`commands.run` in
 * the background with `onStdout`, then `wait()`), each printing 100 lines 10 ms apart from one Perl
 * process (a shell loop around `sleep` would fork 20,000 processes and measure the fork storm, not
 * the daemon). Reports how many completed with every line and exit 0, the start latency (call →
 * start event) and first-byte latency (call → first stdout callback) p50/p99, the wall time, and
 * the daemon's peak RSS. Meanwhile `GET /health` is asked every 10 ms on its own keep-alive
 * connection: its latency while 200 commands start is whether a start storm freezes the daemon
 * (issue 15.6: p99 ≤ 100 ms).
 */
import { Agent, request } from "node:http";
import type { Sandbox } from "e2b";
import { PeakSampler, type Percentiles, percentiles, sleep } from "../lib/measure.ts";

/** Asks GET /health every `everyMs` (one at a time, one kept connection) until stopped. */
export function probeHealth(url: string, everyMs = 10): { stop(): Promise<Percentiles> } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const ms: number[] = [];
  let running = true;
  const once = () =>
    new Promise<void>((resolve) => {
      const a = performance.now();
      const req = request(`${url}/health`, { agent }, (res) => {
        res.resume();
        res.once("end", () => {
          ms.push(performance.now() - a);
          resolve();
        });
      });
      req.once("error", () => resolve());
      req.end();
    });
  const loop = (async () => {
    while (running) {
      await once();
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      agent.destroy();
      return percentiles(ms);
    },
  };
}

export interface OursStreams {
  streams: number;
  completed: number;
  failures: string[];
  startMs: Percentiles;
  firstByteMs: Percentiles;
  wallS: number;
  peakRssMiB: number;
  /** GET /health latency while the streams started and ran. */
  healthMs?: Percentiles;
}

const LINES = 100;
const SCRIPT = `perl -e '$| = 1; for my $i (1..${LINES}) { print "line $i\\n"; select(undef, undef, undef, 0.01) }'`;

export async function measureOursStreams(pid: number, sbx: Sandbox, user: string, streams: number, url?: string): Promise<OursStreams> {
  const sampler = new PeakSampler(pid);
  const health = url === undefined ? undefined : probeHealth(url);
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
  const healthMs = await health?.stop();
  for (const r of results) if (r.status === "rejected") failures.push(String(r.reason).slice(0, 200));
  return {
    streams,
    completed: results.filter((r) => r.status === "fulfilled").length,
    failures: [...new Set(failures)].slice(0, 5),
    startMs: percentiles(started),
    firstByteMs: percentiles(firstByte),
    wallS,
    peakRssMiB: sampler.stop().peakMiB,
    ...(healthMs ? { healthMs } : {}),
  };
}
