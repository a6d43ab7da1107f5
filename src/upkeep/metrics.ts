/**
 * Guest metrics for GET /metrics (docs/protocol.md §4.2), in E2B envd's field names and units.
 *
 * - CPU: a background sampler reads /proc/stat once a second (Wrenn's seed 004: a per-request
 *   sample is unstable); `cpu_used_pct` is the busy share of the last full interval, 2 decimals,
 *   0 until the first interval has passed. busy = total − idle − iowait, as gopsutil counts it.
 * - Memory: `mem_used` = MemTotal − MemAvailable (Wrenn's seed 003; the Wrenn host reads it),
 *   `mem_cache` = Cached + SReclaimable (gopsutil's "cached", which the E2B orchestrator reads).
 * - Disk: statfs of `/`: used = (blocks − bavail) × bsize, total = blocks × bsize.
 */
import { readFileSync, statfsSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { bytesPerSecond, type IoCounters } from "./activity.ts";

export interface Metrics {
  ts: number;
  cpu_count: number;
  cpu_used_pct: number;
  mem_total_mib: number;
  mem_used_mib: number;
  mem_total: number;
  mem_used: number;
  mem_cache: number;
  disk_used: number;
  disk_total: number;
}

export const CPU_SAMPLE_INTERVAL_MS = 1_000;
const MIB = 1024 * 1024;

export interface CpuTimes {
  total: number;
  idle: number;
}

/** The aggregate `cpu` line of /proc/stat: total jiffies and idle + iowait. */
export function parseProcStat(text: string): CpuTimes {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("/proc/stat has no cpu line");
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already in user/nice.
  const total = f.slice(0, 8).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { total, idle };
}

/** Busy percentage between two samples, rounded to 2 decimals, within 0..100. */
export function cpuPercent(prev: CpuTimes, next: CpuTimes): number {
  const total = next.total - prev.total;
  if (total <= 0) return 0;
  const busy = total - (next.idle - prev.idle);
  const pct = Math.min(100, Math.max(0, (busy / total) * 100));
  return Math.round(pct * 100) / 100;
}

/** /proc/meminfo values in bytes, by key. */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([^:]+):\s+(\d+)(?:\s+kB)?/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]) * (line.includes("kB") ? 1024 : 1));
  }
  return out;
}

export interface MemoryStats {
  total: number;
  used: number;
  cache: number;
}

export function memoryFrom(meminfo: Map<string, number>): MemoryStats {
  const total = meminfo.get("MemTotal");
  if (total === undefined) throw new Error("/proc/meminfo has no MemTotal");
  // Kernels before 3.14 have no MemAvailable: estimate it as free + buffers + cached.
  const available =
    meminfo.get("MemAvailable") ?? (meminfo.get("MemFree") ?? 0) + (meminfo.get("Buffers") ?? 0) + (meminfo.get("Cached") ?? 0);
  return {
    total,
    used: Math.max(0, total - available),
    cache: (meminfo.get("Cached") ?? 0) + (meminfo.get("SReclaimable") ?? 0),
  };
}

export function readMemory(path = "/proc/meminfo"): MemoryStats {
  return memoryFrom(parseMeminfo(readFileSync(path, "utf8")));
}

export function readDisk(path = "/"): { used: number; total: number } {
  const s = statfsSync(path);
  return { used: (s.blocks - s.bavail) * s.bsize, total: s.blocks * s.bsize };
}

/**
 * Samples /proc/stat every second on an unref'd timer; `percent` is the last interval's value.
 * With `readIo` it also samples the network and disk byte counters (upkeep/activity.ts) into
 * `netBps` / `diskBps`, so GET /activity reads numbers only.
 */
export class CpuSampler implements Disposable {
  readonly #read: () => CpuTimes;
  readonly #readIo: (() => IoCounters) | undefined;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #prev: CpuTimes | undefined;
  #prevIo: { at: number; io: IoCounters } | undefined;
  #percent = 0;
  #netBps = 0;
  #diskBps = 0;
  #cpuCount = 0;

  /** `now`: the monotonic clock in ms the byte rates are measured with (tests pass their own). */
  constructor(opts: { read?: () => CpuTimes; readIo?: () => IoCounters; intervalMs?: number; now?: () => number } = {}) {
    this.#read = opts.read ?? (() => parseProcStat(readFileSync("/proc/stat", "utf8")));
    this.#readIo = opts.readIo;
    this.#intervalMs = opts.intervalMs ?? CPU_SAMPLE_INTERVAL_MS;
    this.#now = opts.now ?? (() => performance.now());
  }

  get percent(): number {
    return this.#percent;
  }

  /** Network bytes per second (receive + transmit, no loopback) over the last interval. */
  get netBps(): number {
    return this.#netBps;
  }

  /** Disk bytes per second (read + written, whole physical disks) over the last interval. */
  get diskBps(): number {
    return this.#diskBps;
  }

  /** Logical CPUs, counted at the last sample (a hot-plugged CPU shows up within a second). */
  get cpuCount(): number {
    if (this.#cpuCount === 0) this.#cpuCount = logicalCpus();
    return this.#cpuCount;
  }

  /** Starts sampling (idempotent). */
  start(): void {
    if (this.#timer) return;
    this.#prev = this.#sample();
    try {
      if (this.#readIo) this.#prevIo = { at: this.#now(), io: this.#readIo() };
    } catch {
      // the first tick starts the baseline instead
    }
    this.#timer = setInterval(() => this.tick(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Takes one sample now (the timer calls this; tests may too). */
  tick(): void {
    const next = this.#sample();
    if (this.#prev && next) this.#percent = cpuPercent(this.#prev, next);
    if (next) this.#prev = next;
    this.#cpuCount = logicalCpus();
    if (!this.#readIo) return;
    let io: IoCounters;
    try {
      io = this.#readIo();
    } catch {
      return;
    }
    const at = this.#now();
    if (this.#prevIo) {
      const ms = at - this.#prevIo.at;
      this.#netBps = bytesPerSecond(this.#prevIo.io.netBytes, io.netBytes, ms);
      this.#diskBps = bytesPerSecond(this.#prevIo.io.diskBytes, io.diskBytes, ms);
    }
    this.#prevIo = { at, io };
  }

  /** Stops sampling (shutdown, snapshot); the last value is kept. Idempotent. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#prev = undefined;
    // A snapshot pause between two samples must not count as one long, quiet interval.
    this.#prevIo = undefined;
  }

  [Symbol.dispose](): void {
    this.stop();
  }

  #sample(): CpuTimes | undefined {
    try {
      return this.#read();
    } catch {
      return undefined;
    }
  }
}

/** One /metrics document. Throws when /proc or statfs cannot be read. */
export function collectMetrics(cpu: CpuSampler): Metrics {
  const mem = readMemory();
  const disk = readDisk("/");
  return {
    ts: Math.floor(Date.now() / 1000),
    cpu_count: logicalCpus(),
    cpu_used_pct: cpu.percent,
    mem_total_mib: Math.floor(mem.total / MIB),
    mem_used_mib: Math.floor(mem.used / MIB),
    mem_total: mem.total,
    mem_used: mem.used,
    mem_cache: mem.cache,
    disk_used: disk.used,
    disk_total: disk.total,
  };
}

function logicalCpus(): number {
  const n = cpus().length;
  return n > 0 ? n : availableParallelism();
}
