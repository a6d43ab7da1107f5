/**
 * One runtime's pass over our daemon, in the order that makes the memory figures meaningful: idle,
 * the 1,000-command soak (which is also the round-trip figure) and a second soak (the leak test),
 * then each burst followed by 10 s of rest, then the start-up figure with fresh daemons.
 *
 * A figure that throws is recorded as failed (with the error) and the pass goes on; the run then
 * exits 1 (bench/run.ts), so a broken figure is never a silent gap.
 */
import { chownSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { Process } from "../src/gen/process/process_pb.js";
import { type Runtime, startDaemon } from "../test/e2e/harness.ts";
import type { BenchUser } from "./lib/bench-user.ts";
import type { Memory } from "./lib/measure.ts";
import type { Sizes } from "./sizes.ts";
import { settledMemory } from "./figures/memory.ts";
import { measureOursRoundTrip, type OursRoundTrip, soak } from "./figures/round-trip.ts";
import { measureOursStart, type Startup } from "./figures/startup.ts";
import { measureOursStreams, type OursStreams } from "./figures/streams.ts";
import { measureOursThroughput, type OursThroughput } from "./figures/throughput.ts";
import { filesAvailable, measureOursTransfer, type OursTransfer } from "./figures/transfer.ts";
import { measureOursWatch, type OursWatch, watchAvailable } from "./figures/watch.ts";

/** A figure that could not be measured, and why. */
export interface Unavailable {
  unavailable: string;
}

export type Maybe<T> = T | Unavailable;

export function isUnavailable(x: unknown): x is Unavailable {
  return typeof x === "object" && x !== null && "unavailable" in x;
}

export interface OursRun {
  runtime: Runtime;
  idle: Memory;
  roundTrip: Maybe<OursRoundTrip>;
  /** RSS after the first soak (the round-trip one) and after a second, identical soak, each after `soakRestMs`. */
  afterSoak: Maybe<Memory>;
  afterSecondSoak: Maybe<Memory>;
  throughputJson: Maybe<OursThroughput>;
  throughputBinary: Maybe<OursThroughput>;
  afterThroughput: Maybe<Memory>;
  /** RSS `retentionSettleMs` after each burst's 10-s reading, just before the next burst. */
  laterThroughput: Maybe<Memory>;
  streams: Maybe<OursStreams>;
  afterStreams: Maybe<Memory>;
  laterStreams: Maybe<Memory>;
  transfer: Maybe<OursTransfer>;
  afterTransfer: Maybe<Memory>;
  laterTransfer: Maybe<Memory>;
  watch: Maybe<OursWatch>;
  startup: Maybe<Startup>;
  /** The daemon's exit code on SIGTERM at the end of the pass (0 expected). */
  exitCode: number | null;
  /** Figures that threw, with the error. */
  failures: string[];
}

export async function runOurs(
  runtime: Runtime,
  sizes: Sizes,
  user: BenchUser,
  files: { src: string; local: string },
  log: (msg: string) => void,
): Promise<OursRun> {
  const failures: string[] = [];
  const attempt = async <T>(figure: string, fn: () => Promise<T>): Promise<Maybe<T>> => {
    try {
      return await fn();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push(`${figure}: ${message}`);
      log(`${runtime}: ${figure} FAILED: ${message}`);
      return { unavailable: `failed: ${message.slice(0, 120)}` };
    }
  };
  const envd = await startDaemon({ runtime });
  const pid = envd.pid;
  try {
    const auth = { authorization: `Basic ${Buffer.from(`${user.name}:`).toString("base64")}` };
    const json = createClient(Process, envd.transport({ headers: auth }));
    const binary = createClient(Process, envd.transport({ binary: true, headers: auth }));
    const sbx = await envd.sandbox();
    const rest = (ms: number) => attempt("memory", () => settledMemory(pid, ms));

    const idle = await settledMemory(pid, sizes.idleSettleMs);
    log(`${runtime}: idle RSS ${idle.rssMiB.toFixed(1)} MiB; soak of ${sizes.soakCommands} commands, twice`);
    const roundTrip = await attempt("round trip", () => measureOursRoundTrip(sbx, json, user.name, sizes.soakCommands));
    const afterSoak = await rest(sizes.soakRestMs);
    const second = await attempt("second soak", () => soak(sbx, user.name, sizes.soakCommands));
    const afterSecondSoak = isUnavailable(second) ? second : await rest(sizes.soakRestMs);

    log(`${runtime}: stdout throughput, ${sizes.streamBytes} bytes × ${sizes.throughputReps}, JSON then binary`);
    const throughputJson = await attempt("throughput JSON", () => measureOursThroughput(pid, json, sizes.streamBytes, sizes.throughputReps));
    const throughputBinary = await attempt("throughput binary", () => measureOursThroughput(pid, binary, sizes.streamBytes, sizes.throughputReps));
    const afterThroughput = await rest(sizes.burstSettleMs);
    const laterThroughput = await rest(sizes.retentionSettleMs);

    log(`${runtime}: ${sizes.streams} concurrent streams`);
    const streams = await attempt("streams", () => measureOursStreams(pid, sbx, user.name, sizes.streams, envd.url));
    const afterStreams = await rest(sizes.burstSettleMs);
    const laterStreams = await rest(sizes.retentionSettleMs);

    const remote = join(user.home, "transfer.bin");
    let transfer: Maybe<OursTransfer>;
    let afterTransfer: Maybe<Memory>;
    let laterTransfer: Maybe<Memory>;
    if (await filesAvailable(envd.url, user.name, remote)) {
      log(`${runtime}: /files upload and download, ${sizes.transferBytes} bytes × ${sizes.transferReps}`);
      transfer = await attempt("transfer", () =>
        measureOursTransfer(pid, envd.url, sbx, user.name, files.src, remote, files.local, sizes.transferBytes, sizes.transferReps),
      );
      afterTransfer = await rest(sizes.burstSettleMs);
      laterTransfer = await rest(sizes.retentionSettleMs);
    } else {
      transfer = afterTransfer = laterTransfer = { unavailable: "POST /files is not implemented in this build (issue 5)" };
    }
    rmSync(remote, { force: true });

    const watchDir = join(user.home, "watched");
    mkdirSync(watchDir, { recursive: true });
    chownSync(watchDir, user.uid, user.gid);
    let watch: Maybe<OursWatch>;
    if (await watchAvailable(sbx, watchDir, user.name)) {
      log(`${runtime}: watch latency, ${sizes.watchEvents} events`);
      watch = await attempt("watch", () => measureOursWatch(sbx, watchDir, user.name, sizes.watchEvents));
    } else {
      watch = { unavailable: "Filesystem.WatchDir is not implemented in this build (issue 4)" };
    }
    rmSync(watchDir, { recursive: true, force: true });

    const exitCode = await envd.stop();
    if (exitCode !== 0) failures.push(`daemon exited ${exitCode} on SIGTERM`);
    log(`${runtime}: start until /health, ${sizes.startups} starts`);
    const startup = await attempt("start-up", () => measureOursStart(runtime, sizes.startups, sizes.idleSettleMs));
    return {
      runtime,
      idle,
      roundTrip,
      afterSoak,
      afterSecondSoak,
      throughputJson,
      throughputBinary,
      afterThroughput,
      laterThroughput,
      streams,
      afterStreams,
      laterStreams,
      transfer,
      afterTransfer,
      laterTransfer,
      watch,
      startup,
      exitCode,
      failures,
    };
  } finally {
    await envd.stop();
  }
}
