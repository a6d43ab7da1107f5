/**
 * Requests are taken in turns when they arrive in a burst. The runtime hands the daemon every
 * socket that became readable in one go, and a burst of requests (200 Starts from an SDK, a host
 * fanning out calls) used to be handled back to back in that one go: ~0.5 ms each under load, so
 * ~100 ms in which nothing else ran, not the host's /health, not the output of the processes
 * already running (docs/benchmarks.md, start storm). Once the current turn has spent
 * `budgetMs` on requests, the next one waits for a later turn, one per event-loop turn, in arrival
 * order; between two, the loop reads sockets and pipes. A request that finds no burst is handled
 * at once, as before.
 */

export interface Admission {
  /** Runs `handle` now, or in a later event-loop turn when this turn's budget is spent. */
  admit(handle: () => void): void;
  /** Requests waiting for their turn. */
  readonly waiting: number;
}

export function createAdmission(budgetMs = 2, now: () => number = () => performance.now()): Admission {
  const queue: (() => void)[] = [];
  /** When the current turn handled its first request; undefined between turns. */
  let turnStartedAt: number | undefined;
  let draining = false;

  const startTurn = (t: number) => {
    turnStartedAt = t;
    setImmediate(() => {
      turnStartedAt = undefined;
    });
  };
  const drain = () => {
    const handle = queue.shift();
    if (queue.length === 0) draining = false;
    else setImmediate(drain);
    if (!handle) return;
    startTurn(now());
    handle();
  };

  return {
    admit(handle) {
      const t = now();
      if (turnStartedAt === undefined) startTurn(t);
      if (queue.length === 0 && t - (turnStartedAt as number) < budgetMs) {
        handle();
        return;
      }
      queue.push(handle);
      if (!draining) {
        draining = true;
        setImmediate(drain);
      }
    },
    get waiting() {
      return queue.length;
    },
  };
}
