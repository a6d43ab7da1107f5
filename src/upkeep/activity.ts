/**
 * Network and disk byte rates for `GET /activity` (Wrenn; envd-rs `src/http/activity.rs`), which
 * the host polls every few seconds to decide whether the sandbox is busy. Sampled by the same 1 s
 * sampler as the CPU (metrics.ts), so a request reads numbers and makes no syscall.
 *
 * - Network: receive + transmit bytes of every interface in /proc/net/dev except loopback
 *   (traffic a sandbox makes with itself is not activity the host can see or bill).
 * - Disk: sectors read + written (× 512) of every whole, physical disk in /proc/diskstats: names
 *   in /sys/block that are not under /sys/devices/virtual (loop, ram, zram, dm and md devices
 *   would count the same I/O twice). Partitions are never in /sys/block.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/** Received plus transmitted bytes of every interface except `lo`. */
export function parseNetDevBytes(text: string): number {
  let total = 0;
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    if (name === "lo") continue;
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    // receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes …
    total += (Number.isFinite(f[0]) ? (f[0] as number) : 0) + (Number.isFinite(f[8]) ? (f[8] as number) : 0);
  }
  return total;
}

/** Bytes read plus written (sectors × 512) of the named disks in /proc/diskstats. */
export function parseDiskstatsBytes(text: string, disks: ReadonlySet<string>): number {
  let sectors = 0;
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !disks.has(f[2] as string)) continue;
    // major minor name reads merged sectors_read ms writes merged sectors_written …
    const read = Number(f[5]);
    const written = Number(f[9]);
    sectors += (Number.isFinite(read) ? read : 0) + (Number.isFinite(written) ? written : 0);
  }
  return sectors * 512;
}

/** Whole physical disks: /sys/block entries whose device is not virtual. Cached by name. */
export class PhysicalDisks {
  readonly #dir: string;
  readonly #known = new Map<string, boolean>();

  constructor(sysBlockDir = "/sys/block") {
    this.#dir = sysBlockDir;
  }

  list(): Set<string> {
    const out = new Set<string>();
    let names: string[];
    try {
      names = readdirSync(this.#dir);
    } catch {
      return out;
    }
    for (const name of names) {
      let physical = this.#known.get(name);
      if (physical === undefined) {
        try {
          physical = !readlinkSync(join(this.#dir, name)).includes("/devices/virtual/");
        } catch {
          physical = true; // a plain directory (tests, old kernels): count it
        }
        this.#known.set(name, physical);
      }
      if (physical) out.add(name);
    }
    return out;
  }
}

export interface IoCounters {
  netBytes: number;
  diskBytes: number;
}

/** Reads the two byte counters now; a file that cannot be read counts 0. */
export function readIoCounters(disks: PhysicalDisks, paths = { netDev: "/proc/net/dev", diskstats: "/proc/diskstats" }): IoCounters {
  const read = (p: string) => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return "";
    }
  };
  return { netBytes: parseNetDevBytes(read(paths.netDev)), diskBytes: parseDiskstatsBytes(read(paths.diskstats), disks.list()) };
}

/** Bytes per second between two samples `ms` apart (0 for a counter that went backwards). */
export function bytesPerSecond(prev: number, next: number, ms: number): number {
  if (ms <= 0 || next < prev) return 0;
  return Math.round(((next - prev) * 1000) / ms);
}
