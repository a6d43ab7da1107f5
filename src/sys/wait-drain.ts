/**
 * Waiting for a writable's room: the one backpressure wait of the daemon's own writers (a
 * process's stdin, a download's response).
 */
import type { Writable } from "node:stream";

/**
 * Resolves on "drain". Rejects with `closedError()` when the stream closes first (or is already
 * destroyed), and with the signal's reason on abort (also one that came before the call: its
 * "abort" event would never fire again).
 */
export function waitForDrain(stream: Writable, signal: AbortSignal | undefined, closedError: () => unknown): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (stream.destroyed) return Promise.reject(closedError());
  return new Promise((resolve, reject) => {
    const done = (err?: unknown) => {
      stream.off("drain", onDrain);
      stream.off("close", onClose);
      signal?.removeEventListener("abort", onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = () => done();
    const onClose = () => done(closedError());
    const onAbort = () => done(signal?.reason);
    stream.once("drain", onDrain);
    stream.once("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
