/**
 * Helpers shared by the server-streaming RPCs: keepalive interval, waiting on a subscription with
 * a keepalive timer and the request's abort signal, and nothing left behind when the client leaves.
 */
import { ConnectError } from "@connectrpc/connect";
import { Code } from "../errors.ts";

/** `Keepalive-Ping-Interval` header in seconds (the SDK sends 50); 90 when missing or invalid. */
export function keepaliveMsOf(headers: Headers): number {
  const raw = headers.get("keepalive-ping-interval");
  const n = raw === null ? Number.NaN : Number(raw);
  return Number.isInteger(n) && n > 0 && n <= 24 * 3600 ? n * 1000 : 90_000;
}

export type WaitResult = "ready" | "timeout";

/**
 * Waits for `ready`, at most `ms`. Rejects with the abort reason when `signal` fires, so an
 * abandoned stream unwinds through its `finally` blocks at once.
 */
export function waitReady(ready: Promise<void>, ms: number, signal: AbortSignal): Promise<WaitResult> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<WaitResult>((resolve, reject) => {
    const timer = setTimeout(() => finish("timeout"), ms);
    const onAbort = () => finish(undefined, abortError(signal));
    function finish(result?: WaitResult, err?: unknown) {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolve(result as WaitResult);
    }
    signal.addEventListener("abort", onAbort, { once: true });
    ready.then(
      () => finish("ready"),
      (err: unknown) => finish(undefined, err),
    );
  });
}

/**
 * Runs `release` when the client leaves, also while the stream's generator is parked in a write
 * that backpressure holds (it would otherwise only notice at its next step). Dispose to stop.
 */
export function releaseOnAbort(signal: AbortSignal, release: () => void): Disposable {
  signal.addEventListener("abort", release, { once: true });
  return { [Symbol.dispose]: () => signal.removeEventListener("abort", release) };
}

function abortError(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError
    ? signal.reason
    : new ConnectError("the request was cancelled", Code.Canceled, undefined, undefined, signal.reason);
}
