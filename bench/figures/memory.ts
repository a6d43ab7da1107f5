/**
 * Memory figures: the daemon's RSS idle after start, after the 1,000-command soak, and 10 s after
 * each burst (throughput, 200 streams, transfers), against its own idle RSS; sshd's idle RSS as the
 * peer. All from /proc/<pid>/status (VmRSS, RssAnon).
 */
import { type Memory, memoryOf, sleep, totalRssMiB } from "../lib/measure.ts";

/** RSS after `settleMs` of idleness. */
export async function settledMemory(pid: number, settleMs: number): Promise<Memory> {
  await sleep(settleMs);
  return memoryOf(pid);
}

export interface PeerMemory {
  /** The listening sshd alone. */
  idleRssMiB: number;
  /** The per-connection sshd processes of one kept connection (privilege-separated monitor and session). */
  connectionRssMiB: number;
}

export function sshdMemory(listenerPid: number, connectionPids: number[]): PeerMemory {
  return { idleRssMiB: memoryOf(listenerPid).rssMiB, connectionRssMiB: totalRssMiB(connectionPids) };
}
