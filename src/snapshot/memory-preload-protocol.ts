/**
 * What the memory preload's thread (memory-preload-worker.ts) and the daemon (memory-preload.ts)
 * exchange, in a module of its own so the daemon does not load the worker's code (nor
 * node:worker_threads) at start.
 */
export interface WalkRequest {
  iomemPath: string;
  devMemPath: string;
  kcorePath: string;
  /** Int32 [stop] then Float64 [pages, bytes] views over one SharedArrayBuffer (see layout below). */
  control: SharedArrayBuffer;
}

export type WalkResult =
  | { ok: true; stopped: boolean; source: "/dev/mem" | "/proc/kcore"; regions: number; pages: number; bytes: number }
  | { ok: false; stopped: boolean; error: string };

/** Layout of WalkRequest.control: 8 bytes of Int32 flags, then two Float64 counters. */
export const CONTROL_BYTES = 24;
export const controlViews = (sab: SharedArrayBuffer) => ({
  flags: new Int32Array(sab, 0, 2),
  counters: new Float64Array(sab, 8, 2),
});
