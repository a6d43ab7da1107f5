/**
 * Owns every process the daemon started, by pid and by tag.
 *
 * Live processes are listed; an exited one leaves the list at once but its record (end status and
 * output history) stays reachable by pid and tag for `retentionMs`, so a late Connect still gets
 * the exit code and the output. A new process reusing the pid or tag replaces the record.
 */
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { ProcessHandle, type StartOptions } from "./process-handle.ts";

export type Selector = { pid: number } | { tag: string };

export const EXIT_RETENTION_MS = 30_000;

export class ProcessTable implements AsyncDisposable {
  readonly #live = new Map<number, ProcessHandle>();
  readonly #retained = new Map<number, { handle: ProcessHandle; timer: NodeJS.Timeout }>();
  /**
   * Starts whose spawn is still being awaited. close() waits for them before it signals, so a
   * process whose spawn was in flight when shutdown began is signalled too, never left behind.
   */
  readonly #starting = new Set<Promise<unknown>>();
  readonly #log: Logger;
  readonly #retentionMs: number;
  #closed = false;

  constructor(log: Logger, retentionMs = EXIT_RETENTION_MS) {
    this.#log = log;
    this.#retentionMs = retentionMs;
  }

  start(opts: StartOptions): Promise<ProcessHandle> {
    if (this.#closed) return Promise.reject(new EnvdError(Code.Unavailable, "envd is shutting down"));
    const started = this.#startAndRegister(opts);
    const settled = started.then(
      () => undefined,
      () => undefined,
    );
    this.#starting.add(settled);
    void settled.then(() => this.#starting.delete(settled));
    return started;
  }

  async #startAndRegister(opts: StartOptions): Promise<ProcessHandle> {
    const handle = await ProcessHandle.start(opts);
    this.#forgetRetained(handle.pid);
    if (handle.tag !== undefined) {
      for (const [pid, r] of this.#retained) if (r.handle.tag === handle.tag) this.#forgetRetained(pid);
    }
    this.#live.set(handle.pid, handle);
    this.#log.info("process started", { pid: handle.pid, tag: handle.tag, cmd: opts.config.cmd, pty: handle.isPty });
    void handle.exited.then((status) => {
      this.#log.info("process ended", { pid: handle.pid, tag: handle.tag, status: status.status, timedOut: handle.timedOut });
      if (this.#live.get(handle.pid) === handle) this.#live.delete(handle.pid);
      if (this.#closed) return;
      const timer = setTimeout(() => this.#forgetRetained(handle.pid), this.#retentionMs);
      timer.unref();
      this.#forgetRetained(handle.pid);
      this.#retained.set(handle.pid, { handle, timer });
    });
    return handle;
  }

  /** Live processes, oldest first. */
  list(): ProcessHandle[] {
    return [...this.#live.values()];
  }

  /** A live process, or one that ended within the retention period. NotFound otherwise. */
  find(selector: Selector): ProcessHandle {
    const handle = this.#lookup(selector, true);
    if (!handle) throw notFound(selector);
    return handle;
  }

  /** A live process only. NotFound otherwise (an ended process cannot take signals, resizes or EOF). */
  findLive(selector: Selector): ProcessHandle {
    const handle = this.#lookup(selector, false);
    if (!handle) throw notFound(selector);
    return handle;
  }

  #lookup(selector: Selector, includeEnded: boolean): ProcessHandle | undefined {
    if ("pid" in selector) {
      return this.#live.get(selector.pid) ?? (includeEnded ? this.#retained.get(selector.pid)?.handle : undefined);
    }
    // The newest live process with the tag, else the newest retained one.
    let found: ProcessHandle | undefined;
    for (const h of this.#live.values()) if (h.tag === selector.tag) found = h;
    if (found || !includeEnded) return found;
    for (const r of this.#retained.values()) if (r.handle.tag === selector.tag) found = r.handle;
    return found;
  }

  #forgetRetained(pid: number): void {
    const r = this.#retained.get(pid);
    if (!r) return;
    clearTimeout(r.timer);
    r.handle.output.clearHistory();
    this.#retained.delete(pid);
  }

  /**
   * Shutdown: SIGTERM every process group, SIGKILL what is left after `graceMs`, and wait for the
   * ends to be delivered. Idempotent.
   */
  async close(graceMs = 2_000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // A start that passed the #closed check is still spawning: let it land in #live first.
    await Promise.all([...this.#starting]);
    const live = this.list();
    for (const h of live) h.signal("SIGTERM");
    const all = Promise.all(live.map((h) => h.exited));
    const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), graceMs).unref());
    if ((await Promise.race([all, timer])) === "timeout") {
      for (const h of this.list()) h.signal("SIGKILL");
      await Promise.race([all, new Promise((r) => setTimeout(r, 2_000).unref())]);
    }
    for (const pid of [...this.#retained.keys()]) this.#forgetRetained(pid);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function notFound(selector: Selector): EnvdError {
  return "pid" in selector
    ? new EnvdError(Code.NotFound, `process with pid ${selector.pid} not found`)
    : new EnvdError(Code.NotFound, `process with tag ${selector.tag} not found`);
}
