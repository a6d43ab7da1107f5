/**
 * Owns every process the daemon started, by pid and by tag.
 *
 * Live processes are listed; an exited one leaves the list at once but its record (end status and
 * output history) stays reachable by pid and tag for `retentionMs`, so a late Connect still gets
 * the exit code and the output. A new process reusing the pid or tag replaces the record.
 *
 * `packEnded()` (the heap trimmer's, before it collects) replaces each retained handle that nobody
 * reads with a compact EndedProcess, which answers the same calls (ended-process.ts says why).
 */
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { EndedProcess } from "./ended-process.ts";
import { ProcessHandle, type StartOptions } from "./process-handle.ts";

export type Selector = { pid: number } | { tag: string };

/** What `find` returns: a live (or just ended) handle, or the compact record of an ended one. */
export type ProcessRecord = ProcessHandle | EndedProcess;

interface Retained {
  record: ProcessRecord;
  timer: NodeJS.Timeout;
  /** When the record is forgotten (the table's monotonic clock: a restore's clock step does not move it). */
  until: number;
}

export const EXIT_RETENTION_MS = 30_000;

/** What packEnded() may copy: per record (its retained output) and per pass. */
export interface PackLimits {
  recordBytes: number;
  passBytes: number;
}

/** Twice the history bound (1 MiB) per record; 32 MiB of copies per pass. */
export const PACK_LIMITS: Readonly<PackLimits> = Object.freeze({ recordBytes: 2 << 20, passBytes: 32 << 20 });

export class ProcessTable implements AsyncDisposable {
  readonly #live = new Map<number, ProcessHandle>();
  readonly #retained = new Map<number, Retained>();
  /**
   * Starts whose spawn is still being awaited. close() waits for them before it signals, so a
   * process whose spawn was in flight when shutdown began is signalled too, never left behind.
   */
  readonly #starting = new Set<Promise<unknown>>();
  readonly #log: Logger;
  readonly #retentionMs: number;
  readonly #now: () => number;
  #released = 0;
  #closed = false;

  /** `now`: a monotonic clock in ms (tests pass a fake one). */
  constructor(log: Logger, retentionMs = EXIT_RETENTION_MS, now: () => number = () => performance.now()) {
    this.#now = now;
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
      for (const [pid, r] of this.#retained) if (r.record.tag === handle.tag) this.#forgetRetained(pid);
    }
    this.#live.set(handle.pid, handle);
    this.#log.info("process started", { pid: handle.pid, tag: handle.tag, cmd: opts.config.cmd, pty: handle.isPty });
    void handle.exited.then((status) => {
      this.#log.info("process ended", { pid: handle.pid, tag: handle.tag, status: status.status, timedOut: handle.timedOut });
      if (this.#live.get(handle.pid) === handle) this.#live.delete(handle.pid);
      if (this.#closed) return;
      this.#forgetRetained(handle.pid);
      this.#retain(handle, this.#now() + this.#retentionMs);
    });
    return handle;
  }

  #retain(record: ProcessRecord, until: number): void {
    const timer = setTimeout(() => this.#forgetRetained(record.pid), Math.max(0, until - this.#now()));
    timer.unref();
    this.#retained.set(record.pid, { record, timer, until });
  }

  /**
   * Replaces every retained handle that nobody reads with its compact record, all at once so the
   * records sit together in the heap. Returns how many were packed.
   *
   * Packing copies the retained output, and the originals go only with the collection that follows,
   * so the copies are bounded: a record holding more than `limits.recordBytes` (a departed reader's
   * backlog of a large stream) stays a handle, and a pass copies at most `limits.passBytes` in all;
   * what did not fit waits for the next trim.
   */
  packEnded(limits: PackLimits = PACK_LIMITS): number {
    let packed = 0;
    let budget = limits.passBytes;
    for (const r of this.#retained.values()) {
      if (!(r.record instanceof ProcessHandle)) continue;
      const ended = EndedProcess.of(r.record, Math.min(limits.recordBytes, budget));
      if (!ended) continue;
      budget -= ended.retainedOutputBytes;
      clearTimeout(r.timer);
      this.#retain(ended, r.until); // same key: the map keeps the order of the ends (tag lookups)
      // Whoever still holds the handle (a StreamInput that found it) must not keep a second copy.
      r.record.output.clearHistory();
      packed++;
    }
    return packed;
  }

  /** Live processes, oldest first. */
  list(): ProcessHandle[] {
    return [...this.#live.values()];
  }

  /** A live process, or one that ended within the retention period. NotFound otherwise. */
  find(selector: Selector): ProcessRecord {
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

  #lookup(selector: Selector, includeEnded: false): ProcessHandle | undefined;
  #lookup(selector: Selector, includeEnded: boolean): ProcessRecord | undefined;
  #lookup(selector: Selector, includeEnded: boolean): ProcessRecord | undefined {
    if ("pid" in selector) {
      return this.#live.get(selector.pid) ?? (includeEnded ? this.#retained.get(selector.pid)?.record : undefined);
    }
    // The newest live process with the tag, else the newest retained one.
    let found: ProcessRecord | undefined;
    for (const h of this.#live.values()) if (h.tag === selector.tag) found = h;
    if (found || !includeEnded) return found;
    for (const r of this.#retained.values()) if (r.record.tag === selector.tag) found = r.record;
    return found;
  }

  #forgetRetained(pid: number): void {
    const r = this.#retained.get(pid);
    if (!r) return;
    clearTimeout(r.timer);
    // A reader still attached keeps what it has not read; the rest goes now.
    if (r.record instanceof ProcessHandle) {
      this.#released += r.record.output.retainedBytes;
      r.record.output.clearHistory();
    } else {
      this.#released += r.record.retainedOutputBytes;
    }
    this.#retained.delete(pid);
  }

  /**
   * Bytes of output history let go so far (records forgotten, all time): the heap trimmer compares
   * it between ticks, since that memory is garbage only from then on.
   */
  get releasedOutputBytes(): number {
    return this.#released;
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
