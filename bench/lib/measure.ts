/**
 * Measuring helpers shared by every figure: /proc readers for a process's memory and CPU, a peak
 * RSS sampler, percentiles, and a timer for loops of child processes.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";

export const MiB = 1024 * 1024;

export interface Memory {
  /** VmRSS in MiB: what the process holds in RAM. */
  rssMiB: number;
  /** RssAnon in MiB: the heap part of it (file-backed pages are shared or reclaimable). */
  anonMiB: number;
  /** VmHWM in MiB: the lifetime peak of VmRSS. */
  hwmMiB: number;
}

/** Reads /proc/<pid>/status. Throws when the process is gone. */
export function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssMiB: kib("VmRSS") / 1024, anonMiB: kib("RssAnon") / 1024, hwmMiB: kib("VmHWM") / 1024 };
}

/** Sum of VmRSS of several processes (e.g. sshd and its per-connection children), in MiB. */
export function totalRssMiB(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += memoryOf(pid).rssMiB;
    } catch {
      // gone
    }
  }
  return sum;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds the process used so far, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Samples a process's RSS every `everyMs` until stopped; reports the peak. */
export class PeakSampler {
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;
  peakMiB = 0;
  peakAnonMiB = 0;

  constructor(pid: number, everyMs = 50) {
    this.#pid = pid;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), everyMs);
  }

  #sample(): void {
    try {
      const m = memoryOf(this.#pid);
      this.peakMiB = Math.max(this.peakMiB, m.rssMiB);
      this.peakAnonMiB = Math.max(this.peakAnonMiB, m.anonMiB);
    } catch {
      // the process ended; keep what we saw
    }
  }

  stop(): { peakMiB: number; peakAnonMiB: number } {
    clearInterval(this.#timer);
    this.#sample();
    return { peakMiB: this.peakMiB, peakAnonMiB: this.peakAnonMiB };
  }
}

export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles of `samples` (any unit). */
export function percentiles(samples: number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
  return {
    n: s.length,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  };
}

export function median(samples: number[]): number {
  return percentiles(samples).p50;
}

/** Writes dirty pages back and drops the page cache (root only); false when it could not. */
export function dropPageCache(): boolean {
  try {
    spawnSync("sync");
    writeFileSync("/proc/sys/vm/drop_caches", "3");
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True when `cmd` can be run (found on PATH and exits 0 with `args`). */
export function works(cmd: string, args: string[] = ["--version"]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.status === 0;
}

const PERL_LOOP = String.raw`
use strict; use Time::HiRes qw(time);
my $n = shift @ARGV; my @t;
for (1..$n) { my $a = time; system { $ARGV[0] } @ARGV; die "exit $?\n" if $?; push @t, (time - $a) * 1000; }
print join(" ", @t), "\n";
`;

let perlChecked: boolean | undefined;
function havePerlTimer(): boolean {
  perlChecked ??= works("perl", ["-MTime::HiRes", "-e", "1"]);
  return perlChecked;
}

/**
 * Runs `argv` to its end `n` times in a row and returns each wall time in ms. The loop runs in
 * Perl (fork + exec + waitpid, nothing else), so the numbers carry no JavaScript runtime cost;
 * without Perl it falls back to Node's spawnSync (a few ms slower per run; `via` says which).
 */
export function timeRuns(argv: string[], n: number, env?: NodeJS.ProcessEnv): { ms: number[]; via: "perl" | "node" } {
  if (havePerlTimer()) {
    const r = spawnSync("perl", ["-e", PERL_LOOP, String(n), ...argv], { encoding: "utf8", env, maxBuffer: 64 * MiB });
    if (r.status !== 0) throw new Error(`timing ${argv.join(" ")} failed: ${r.stderr}`);
    return { ms: r.stdout.trim().split(" ").map(Number), via: "perl" };
  }
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = performance.now();
    const r = spawnSync(argv[0] as string, argv.slice(1), { stdio: "ignore", env });
    if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}`);
    ms.push(performance.now() - a);
  }
  return { ms, via: "node" };
}

/** Runs a command once (stdout and stderr to /dev/null unless piped) and returns its wall time in seconds. */
export function timeOnce(argv: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const a = performance.now();
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "ignore", "pipe"], env: options.env });
    let err = "";
    child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      const s = (performance.now() - a) / 1000;
      if (code === 0) resolve(s);
      else reject(new Error(`${argv.join(" ")} exited ${code ?? signal}: ${err.trim()}`));
    });
  });
}

/** A loopback port that was free a moment ago (for programs that must be told their port). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
