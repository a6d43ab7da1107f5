/**
 * A FIFO mutex whose waiters can give up: `acquire(signal)` rejects with the signal's reason when
 * the signal fires before the lock is granted, and the waiter leaves the queue without ever
 * holding the lock.
 */
export class AsyncLock {
  #held = false;
  readonly #waiters: { grant: () => void }[] = [];

  get held(): boolean {
    return this.#held;
  }

  /** Resolves with a release function (idempotent) once the lock is held. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!this.#held) {
      this.#held = true;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.#releaser());
        },
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i !== -1) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next.grant();
      else this.#held = false;
    };
  }
}
