/**
 * Keeps the daemon's memory flat while large files stream through.
 *
 * Every chunk of a transfer is a fresh buffer (the HTTP layer allocates each socket read; we
 * allocate each file read). They die at once, but the runtimes collect them late: a 1 GiB
 * upload grew Bun by 85–100 MiB and Node by 62–69 MiB of garbage. Asking for a collection after
 * every GC_EVERY_BYTES moved by all transfers together brings that to about 30–50 MiB, with no
 * measurable throughput cost (docs/architecture.md, "File transfer", has the numbers).
 *
 * - Bun: `Bun.gc(true)` (its eden collection does not release the buffers; a full one does).
 * - Node: V8's `gc({ type: "minor" })`, a scavenge, which frees exactly these short-lived
 *   buffers in about a millisecond whatever the heap size. `gc` is exposed by setting
 *   `--expose-gc` at run time and taking it from a fresh vm context (the flag only affects
 *   contexts created afterwards); if that fails, there is simply no pacing.
 *
 * Counting bytes globally (not per transfer) and spacing collections by MIN_INTERVAL_MS bounds
 * how often this runs, however many transfers are under way.
 */
import { exposeNodeGc } from "../sys/node-gc.ts";

export const GC_EVERY_BYTES = 32 << 20;
const MIN_INTERVAL_MS = 50;
/** Node: every this many collections is a full one (chunks that outlived two scavenges). */
const MAJOR_EVERY = 8;

/** Picked on the first collection that is due, not at import: picking sets a V8 flag. */
let collect: (() => void) | undefined;
let picked = false;
let sinceGc = 0;
let lastGcAt = 0;

/** Reports bytes a transfer moved; may run a collection. Cheap when it does not. */
export function noteTransferred(bytes: number): void {
  if (picked && !collect) return;
  sinceGc += bytes;
  if (sinceGc < GC_EVERY_BYTES) return;
  const now = performance.now();
  if (now - lastGcAt < MIN_INTERVAL_MS) return;
  sinceGc = 0;
  lastGcAt = now;
  if (!picked) {
    collect = pickCollector();
    picked = true;
  }
  collect?.();
}

function pickCollector(): (() => void) | undefined {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun) return () => bun.gc(true);
  const gc = exposeNodeGc();
  if (!gc) return undefined;
  let n = 0;
  return () => gc({ type: ++n % MAJOR_EVERY === 0 ? "major" : "minor" });
}
