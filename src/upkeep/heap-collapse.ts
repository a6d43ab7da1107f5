/**
 * POST /collapse (E2B envd ≥ 0.6.5): fold the daemon's own anonymous memory into 2 MiB transparent
 * hugepages just before a pause. The orchestrator calls it so that a cold resume faults in fewer,
 * larger frames (each distinct 2 MiB guest frame is one serial fetch from remote storage).
 *
 * As E2B's envd does it: every anonymous read-write mapping in /proc/self/maps gets MADV_HUGEPAGE
 * (so MADV_COLLAPSE is accepted under THP=madvise too), then MADV_COLLAPSE on each 2 MiB window it
 * wholly contains, one window at a time, so an empty or ineligible window is only "skipped". The
 * AnonHugePages delta of /proc/self/smaps_rollup splits the successes into windows really migrated
 * (`collapsed`) and windows that already were hugepages (`alreadyHuge`). Best effort: a kernel
 * without MADV_COLLAPSE (< 6.1), THP disabled, or no FFI → every window skipped (or zero counts),
 * still a 200. The walk stops between windows when the caller gives up, and yields to the event
 * loop as it goes (a first collapse under Bun walks ~3,000 windows in ~0.7 s on a 2-core VM).
 *
 * The cost is memory: a window with only a few live pages becomes a whole 2 MiB page (the kernel's
 * max_ptes_none bounds how sparse), so RSS after a collapse is higher; the heap trimmer's
 * malloc_trim can split pages again later.
 */
import { readFileSync } from "node:fs";
import { loadMadvise } from "../sys/libc.ts";

export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
const MADV_HUGEPAGE = 14;
const MADV_COLLAPSE = 25;

export interface CollapseStats {
  /** Anonymous read-write mappings scanned. */
  regions: number;
  /** 2 MiB windows attempted. */
  chunks: number;
  /** Windows whose pages were migrated into a new hugepage. */
  collapsed: number;
  /** Windows MADV_COLLAPSE accepted that already were hugepages. */
  alreadyHuge: number;
  /** Windows that could not be collapsed (empty or ineligible). */
  skipped: number;
}

export interface Region {
  start: bigint;
  end: bigint;
}

/** The anonymous (no path, no pseudo-name) read-write mappings of a /proc/PID/maps text. */
export function anonRwRegions(maps: string): Region[] {
  const regions: Region[] = [];
  for (const line of maps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, start, end, perms, path] = m as unknown as [string, string, string, string, string];
    if (perms[0] !== "r" || perms[1] !== "w" || path !== "") continue;
    regions.push({ start: BigInt(`0x${start}`), end: BigInt(`0x${end}`) });
  }
  return regions;
}

/** The 2 MiB-aligned windows wholly inside a region. */
export function* hugeWindows(region: Region): Generator<bigint> {
  const size = BigInt(HUGE_PAGE_BYTES);
  for (let at = ((region.start + size - 1n) / size) * size; at + size <= region.end; at += size) yield at;
}

/** AnonHugePages of /proc/self/smaps_rollup in bytes; undefined when it cannot be read. */
export function anonHugePagesBytes(rollup: string): number | undefined {
  const m = /^AnonHugePages:\s+(\d+) kB/m.exec(rollup);
  return m ? Number(m[1]) * 1024 : undefined;
}

/**
 * Splits the windows MADV_COLLAPSE accepted into migrated and already-huge, by how many hugepages
 * appeared. Without a measurement (or when the count went down: THP split elsewhere), every
 * success counts as collapsed, so real work is never reported as a no-op.
 */
export function splitSuccesses(successes: number, before: number | undefined, after: number | undefined): { collapsed: number; alreadyHuge: number } {
  if (before === undefined || after === undefined || after < before) return { collapsed: successes, alreadyHuge: 0 };
  const migrated = Math.min(Math.floor((after - before) / HUGE_PAGE_BYTES), successes);
  return { collapsed: migrated, alreadyHuge: successes - migrated };
}

function readRollup(): number | undefined {
  try {
    return anonHugePagesBytes(readFileSync("/proc/self/smaps_rollup", "utf8"));
  } catch {
    return undefined;
  }
}

/** Windows done between two yields to the event loop (a first collapse on Bun is ~3,000 windows). */
const WINDOWS_PER_TURN = 64;

/**
 * Collapses the daemon's own anonymous memory, window by window, yielding to the event loop every
 * few dozen windows so other requests are still answered. `signal` is checked between windows;
 * what was done so far is returned either way.
 */
export async function collapseSelf(signal?: AbortSignal): Promise<CollapseStats> {
  const stats: CollapseStats = { regions: 0, chunks: 0, collapsed: 0, alreadyHuge: 0, skipped: 0 };
  let maps: string;
  try {
    maps = readFileSync("/proc/self/maps", "utf8");
  } catch {
    return stats;
  }
  const madvise = loadMadvise();
  const before = readRollup();
  let successes = 0;
  for (const region of anonRwRegions(maps)) {
    if (signal?.aborted) break;
    stats.regions++;
    madvise?.(region.start, region.end - region.start, MADV_HUGEPAGE);
    for (const at of hugeWindows(region)) {
      if (signal?.aborted) break;
      stats.chunks++;
      if (madvise?.(at, BigInt(HUGE_PAGE_BYTES), MADV_COLLAPSE) === 0) successes++;
      else stats.skipped++;
      if (stats.chunks % WINDOWS_PER_TURN === 0) await new Promise((r) => setImmediate(r));
    }
  }
  const split = splitSuccesses(successes, before, readRollup());
  stats.collapsed = split.collapsed;
  stats.alreadyHuge = split.alreadyHuge;
  return stats;
}
