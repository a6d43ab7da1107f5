/** How much work each figure does: the full run (`npm run bench`) and the smoke run (`--smoke`). */
export interface Sizes {
  spawnFloorRuns: number;
  idleSettleMs: number;
  /** Commands in each of the two soaks; the round-trip figure is taken from the first. */
  soakCommands: number;
  /** Rest after each soak before RSS is read: past the 30 s an ended process is kept, the heap trimmer's retry and V8's lagging release. */
  soakRestMs: number;
  sshExecRuns: number;
  /** Bytes of stdout per throughput run. */
  streamBytes: number;
  throughputReps: number;
  /** Rest after a burst before RSS is read again. */
  burstSettleMs: number;
  /**
   * Further rest after that reading, before RSS is read once more and the next burst starts: past
   * the 30 s an ended process and a departed reader's backlog are kept (by design) and the heap
   * trimmer's retry, so each burst's 10-s reading holds its own rest, not the burst's before.
   */
  retentionSettleMs: number;
  streams: number;
  transferBytes: number;
  transferReps: number;
  watchEvents: number;
  startups: number;
}

export const FULL: Sizes = {
  spawnFloorRuns: 1000,
  idleSettleMs: 2_000,
  soakCommands: 1000,
  soakRestMs: 60_000,
  sshExecRuns: 300,
  streamBytes: 2 ** 30,
  throughputReps: 3,
  burstSettleMs: 10_000,
  retentionSettleMs: 30_000,
  streams: 200,
  transferBytes: 2 ** 30,
  transferReps: 1,
  watchEvents: 200,
  startups: 15,
};

export const SMOKE: Sizes = {
  spawnFloorRuns: 50,
  idleSettleMs: 200,
  soakCommands: 20,
  soakRestMs: 300,
  sshExecRuns: 5,
  streamBytes: 8 * 2 ** 20,
  throughputReps: 1,
  burstSettleMs: 200,
  retentionSettleMs: 200,
  streams: 10,
  transferBytes: 8 * 2 ** 20,
  transferReps: 1,
  watchEvents: 5,
  startups: 2,
};
