/**
 * Clock sync from /init's timestamp (docs/protocol.md §6.4): the guest clock is set only when it is more
 * than 50 ms behind the host or more than 5 s ahead, so small drifts never make time jump.
 *
 * The clock is set with clock_settime(CLOCK_REALTIME) through the runtime's FFI (src/sys/libc.ts),
 * to the nanosecond and without needing any program in the image. Where FFI is unavailable or the
 * call fails, `date -u -s @<seconds>.<nanoseconds>` (GNU coreutils) is run instead, retried with
 * whole seconds for busybox, whose `date` takes no fraction. The target is advanced by the time
 * elapsed since the request arrived (monotonic), so handling time does not become drift.
 */
import { execFile } from "node:child_process";
import { CLOCK_REALTIME, type Libc, loadLibc } from "../sys/libc.ts";

export const MAX_BEHIND_NS = 50_000_000n;
export const MAX_AHEAD_NS = 5_000_000_000n;
const CLOCK_COMMAND_TIMEOUT_MS = 5_000;

/** True when the guest's clock should be set to the host's: > 50 ms behind or > 5 s ahead. */
export function shouldSetClock(guestNowNs: bigint, hostNs: bigint): boolean {
  return guestNowNs < hostNs - MAX_BEHIND_NS || guestNowNs > hostNs + MAX_AHEAD_NS;
}

/**
 * On a new lifecycle (a resume: the pause froze the guest's clock) the clock is stepped whenever
 * the guest is behind by more than the 1 ms our reading can be off by, or > 5 s ahead; it is never
 * moved back by a few ms (the host's time is already a little old when it arrives).
 */
export function shouldStepOnNewLifecycle(guestNowNs: bigint, hostNs: bigint): boolean {
  return guestNowNs < hostNs - 1_000_000n || guestNowNs > hostNs + MAX_AHEAD_NS;
}

/**
 * The wall clock (CLOCK_REALTIME) in ns since the epoch; ms resolution is plenty against a 50 ms
 * threshold. Not `performance.timeOrigin + now()`: that is monotonic from start and would not see
 * the clock being set, or a restored snapshot's stale clock.
 */
export function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** `@<seconds>.<9-digit nanoseconds>`, the argument `date -s` takes. */
export function epochArgument(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const frac = ns % 1_000_000_000n;
  return `@${sec}.${frac.toString().padStart(9, "0")}`;
}

export type ClockSetter = (targetNs: bigint) => Promise<void>;

const CHRONYC_TIMEOUT_MS = 3_000;

/**
 * Runs `<command> -a makestep` (default `chronyc`, from PATH; ENVD_CHRONYC_COMMAND in tests) so
 * chrony, when it runs, steps the clock at once instead of slewing. Resolves with whether chrony
 * answered `200 OK`; a missing chronyc or a chronyd that is not running resolves false. The child
 * is spawned before this returns.
 */
export function chronyMakestep(command: string | undefined, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command ?? "chronyc", ["-a", "makestep"], { timeout: CHRONYC_TIMEOUT_MS, env: { PATH: path } }, (err, stdout) => {
      resolve(!err && /200 OK/.test(String(stdout)));
    });
  });
}

/** struct timespec (x86_64, aarch64): tv_sec i64, tv_nsec i64, little-endian. */
export function encodeTimespec(ns: bigint): Uint8Array {
  const buf = new Uint8Array(16);
  const view = new DataView(buf.buffer);
  view.setBigInt64(0, ns / 1_000_000_000n, true);
  view.setBigInt64(8, ns % 1_000_000_000n, true);
  return buf;
}

export function decodeTimespec(buf: Uint8Array): bigint {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return view.getBigInt64(0, true) * 1_000_000_000n + view.getBigInt64(8, true);
}

/**
 * Sets the clock with clock_settime, else `date` from PATH; or, when `command` is given
 * (ENVD_CLOCK_COMMAND), only with `<command> @<seconds>.<ns>`. Rejects with the program's error
 * output when it fails.
 */
export function createClockSetter(command: string | undefined, path: string, libc?: Libc): ClockSetter {
  const run = (file: string, args: string[]) =>
    new Promise<void>((resolve, reject) => {
      execFile(file, args, { timeout: CLOCK_COMMAND_TIMEOUT_MS, env: { PATH: path } }, (err, _stdout, stderr) => {
        if (err) reject(new Error(`${file} failed: ${String(stderr).trim() || err.message}`));
        else resolve();
      });
    });
  if (command) return (ns) => run(command, [epochArgument(ns)]);
  return async (ns) => {
    // libc is bound on the first clock step, not at start (FFI costs ~2 MiB resident on Bun).
    const lib = libc ?? loadLibc();
    if (lib && lib.clockSettime(CLOCK_REALTIME, encodeTimespec(ns)) === 0) return;
    try {
      await run("date", ["-u", "-s", epochArgument(ns)]);
    } catch {
      // busybox date: whole seconds only (rounded, so the error stays under 0.5 s)
      await run("date", ["-u", "-s", `@${(ns + 500_000_000n) / 1_000_000_000n}`]);
    }
  };
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Parses an RFC 3339 timestamp to ns since the epoch, keeping every digit of the fraction (the
 * E2B orchestrator sends nanoseconds; Date keeps only milliseconds). Undefined when invalid or
 * before 1970 (no host clock is that far behind).
 */
export function parseRfc3339Ns(text: string): bigint | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 31 Feb over into March: reject days the month does not have.
  if (new Date(ms).getUTCDate() !== day) return undefined;
  let ns = BigInt(ms) * 1_000_000n + BigInt((m[7] ?? "").padEnd(9, "0") || "0");
  if (m[9]) {
    const offH = Number(m[10]);
    const offM = Number(m[11]);
    if (offH > 23 || offM > 59) return undefined;
    const offsetNs = BigInt((offH * 60 + offM) * 60) * 1_000_000_000n;
    ns = m[9] === "+" ? ns - offsetNs : ns + offsetNs;
  }
  return ns;
}
