/**
 * Clock resync after a restore. The guest's wall clock stands still while the VM is paused, so
 * after a restore it is behind by the whole downtime (lab: 4.6–7.4 s), and nothing in the guest
 * notices: CLOCK_MONOTONIC did not advance either.
 *
 * Sources, first that works:
 *  1. chrony, when it runs: `chronyc -a makestep` steps at once (chrony otherwise only slews after
 *     boot, which takes hours to absorb seconds). This is Wrenn's setup (chrony on the KVM PTP clock).
 *  2. A KVM PTP clock (/dev/ptpN, "KVM virtual PTP") read directly through FFI: it gives the
 *     host's CLOCK_REALTIME; the guest clock is stepped when > 50 ms behind or > 5 s ahead.
 *  3. None: the host's next /init `timestamp` sets the clock (E2B's orchestrator sends one on
 *     every resume; see control/clock.ts and control/init-service.ts).
 */
import { closeSync, openSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Libc } from "../sys/libc.ts";
import { type ClockSetter, chronyMakestep, shouldSetClock, wallClockNs } from "../control/clock.ts";

export interface ClockResyncResult {
  source: "chrony" | "phc" | "none";
  /** Set when the clock was stepped (or chrony was told to step). */
  stepped: boolean;
  /** Guest minus reference, when a reference was read. */
  driftMs?: number;
  error?: string;
}

export interface ClockResyncDeps {
  libc: Libc | undefined;
  setClock: ClockSetter;
  /** PATH used to find chronyc. */
  path: string;
  /** Program run instead of `chronyc` (ENVD_CHRONYC_COMMAND). */
  chronyc?: string | undefined;
  /** /sys/class/ptp (tests may point elsewhere). */
  ptpClassDir?: string;
}

export async function resyncClock(deps: ClockResyncDeps): Promise<ClockResyncResult> {
  const chrony = await chronyMakestep(deps.chronyc, deps.path);
  if (chrony === true) return { source: "chrony", stepped: true };
  const phc = findKvmPtp(deps.ptpClassDir ?? "/sys/class/ptp");
  if (phc && deps.libc) {
    try {
      const started = process.hrtime.bigint();
      const refNs = readPtpNs(deps.libc, phc);
      const guestNs = wallClockNs();
      const driftMs = Number((guestNs - refNs) / 1_000_000n);
      if (!shouldSetClock(guestNs, refNs)) return { source: "phc", stepped: false, driftMs };
      await deps.setClock(refNs + (process.hrtime.bigint() - started));
      return { source: "phc", stepped: true, driftMs };
    } catch (err) {
      return { source: "phc", stepped: false, error: String(err) };
    }
  }
  return { source: "none", stepped: false };
}

/** /dev/ptpN of the KVM PTP clock, if the kernel has one. */
export function findKvmPtp(classDir: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(classDir);
  } catch {
    return undefined;
  }
  for (const name of names.sort()) {
    try {
      if (readFileSync(join(classDir, name, "clock_name"), "utf8").trim() === "KVM virtual PTP") return `/dev/${name}`;
    } catch {
      // not readable
    }
  }
  return undefined;
}

/** The PTP clock's time in ns: clock_gettime on the dynamic clock id of an open /dev/ptpN (FD_TO_CLOCKID). */
function readPtpNs(libc: Libc, device: string): bigint {
  const fd = openSync(device, "r");
  try {
    const clockId = ((~fd) << 3) | 3;
    const ts = new Uint8Array(16);
    if (libc.clockGettime(clockId, ts) !== 0) throw new Error(`clock_gettime(${device}) failed (errno ${libc.errno()})`);
    const view = new DataView(ts.buffer);
    return view.getBigInt64(0, true) * 1_000_000_000n + view.getBigInt64(8, true);
  } finally {
    closeSync(fd);
  }
}
