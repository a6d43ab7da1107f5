/**
 * Reseeding the kernel's random pool after a restore, so that clones of one snapshot stop
 * producing the same random numbers (lab finding: two clones returned identical bytes).
 *
 * 1. Collect material that differs between clones: up to 64 bytes from a hardware RNG
 *    (/dev/hwrng: virtio-rng hands out the host's entropy), fine-grained timing jitter, the
 *    wall clock (the host sets it per clone), interrupt and CPU counters, and the caller's bytes.
 * 2. Hash it and write the digest to /dev/urandom: it is mixed into the input pool (not credited).
 * 3. ioctl(RNDRESEEDCRNG) so the CRNG reseeds from the input pool now, instead of at its next
 *    scheduled reseed (up to 60 s later on current kernels). A reseed also mixes in the CPU's own
 *    RDSEED/RDRAND where there is one, which differs per clone even if our material did not.
 *
 * Step 3 needs FFI (libc ioctl) and CAP_SYS_ADMIN. Without it the written bytes still reach the
 * CRNG at its next scheduled reseed. The daemon's own user-space generators (OpenSSL's DRBG,
 * Math.random) are part of the snapshot too and cannot be reseeded from JavaScript; the daemon
 * generates no secrets, so only the kernel pool matters for the workload.
 */
import { createHash } from "node:crypto";
import { closeSync, constants as fsConstants, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import type { Libc } from "../sys/libc.ts";

/** _IO('R', 0x07) */
export const RNDRESEEDCRNG = 0x5207;
const HWRNG_BYTES = 64;

export interface ReseedReport {
  /** Bytes of hardware RNG output mixed in (0 without /dev/hwrng). */
  hwrngBytes: number;
  /** The digest reached /dev/urandom. */
  mixed: boolean;
  /** The kernel reseeded its CRNG at once (RNDRESEEDCRNG). */
  crngReseeded: boolean;
  error?: string;
}

export interface EntropyPaths {
  urandom: string;
  hwrng: string;
}

const DEFAULT_PATHS: EntropyPaths = { urandom: "/dev/urandom", hwrng: "/dev/hwrng" };

export function reseedKernelRandom(libc: Libc | undefined, extra: Uint8Array = new Uint8Array(), paths = DEFAULT_PATHS): ReseedReport {
  const hash = createHash("sha512");
  hash.update(extra);
  const hw = readHwrng(paths.hwrng);
  hash.update(hw);
  hash.update(jitter());
  for (const file of ["/proc/interrupts", "/proc/stat", "/proc/self/stat", "/proc/sys/kernel/random/uuid"]) {
    try {
      hash.update(readFileSync(file));
    } catch {
      // not there: fine
    }
  }
  hash.update(jitter());
  const digest = hash.digest();
  const report: ReseedReport = { hwrngBytes: hw.length, mixed: false, crngReseeded: false };
  let fd: number | undefined;
  try {
    fd = openSync(paths.urandom, "w");
    writeFileSync(fd, digest);
    report.mixed = true;
    if (libc) {
      const rc = libc.ioctl(fd, RNDRESEEDCRNG, new Uint8Array(8));
      report.crngReseeded = rc === 0;
      if (rc !== 0) report.error = `RNDRESEEDCRNG failed (errno ${libc.errno()})`;
    } else report.error = "no FFI: the CRNG picks the new input up at its next scheduled reseed";
  } catch (err) {
    report.error = String(err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return report;
}

/** Non-blocking read of the hardware RNG; empty when absent or not ready. */
function readHwrng(path: string): Uint8Array {
  let fd: number | undefined;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const buf = Buffer.alloc(HWRNG_BYTES);
    const n = readSync(fd, buf, 0, HWRNG_BYTES, null);
    return buf.subarray(0, n);
  } catch {
    return new Uint8Array();
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Nanosecond clock readings around small pieces of work: they differ from run to run. */
function jitter(): Buffer {
  const samples = new BigInt64Array(64);
  let acc = 0;
  for (let i = 0; i < samples.length; i++) {
    for (let j = 0; j < 50 + i; j++) acc = (acc * 31 + j) | 0;
    samples[i] = process.hrtime.bigint() ^ BigInt(acc);
  }
  const wall = Buffer.alloc(16);
  wall.writeDoubleLE(Date.now(), 0);
  wall.writeDoubleLE(performance.now(), 8);
  return Buffer.concat([Buffer.from(samples.buffer), wall]);
}
