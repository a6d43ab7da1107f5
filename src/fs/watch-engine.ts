/**
 * The main-thread side of watching: starts the watch worker thread on first use, hands it watch
 * and unwatch commands, and routes its events to the sink of each watch. The worker reads the
 * kernel queues continuously, so a watch's consumer may be as slow as it likes without making the
 * kernel drop events for anybody; each sink bounds its own backlog.
 *
 * Why not fs.watch: under Node 26 it lost 1,808 of 10,000 creations in a burst without any error
 * (libuv ignores IN_Q_OVERFLOW), and it cannot tell CREATE, REMOVE, RENAME and CHMOD apart.
 */
import { readFileSync, writeSync } from "node:fs";
import type { MessagePort, Worker } from "node:worker_threads";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { EFD_CLOEXEC, EFD_NONBLOCK, libcLoadError, loadLibc } from "../sys/libc.ts";
import { ownTempFiles } from "./own-temp-files.ts";
import type { WorkerCommand, WorkerMessage } from "./watch-worker.ts";

/**
 * The worker's code: beside this file when run from source; in the compiled binary, the second
 * entry point scripts/build.sh bundles (src/fs/watch-worker.ts → /$bunfs/root/fs/watch-worker.js,
 * relative to the binary's one bundled module).
 */
const WORKER_URL = import.meta.url.includes("/$bunfs/")
  ? new URL("./fs/watch-worker.js", import.meta.url)
  : new URL("./watch-worker.ts", import.meta.url);

/** Why a watch stopped. `gone`: the watched directory was removed or moved away. */
export type WatchEnd = { kind: "gone" } | { kind: "error"; error: EnvdError };

export interface WatchSink {
  onEvents(events: [name: string, ops: number][]): void;
  onEnd(end: WatchEnd): void;
}

export interface WatchHandle {
  /** Directories under watch when it was armed. */
  watches: number;
  /** Stops the watch; idempotent. No sink call follows. */
  close(): void;
}

interface Entry {
  sink: WatchSink;
  armed: Deferred<number> | undefined;
}

const EXIT_WAIT_MS = 2_000;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export class WatchEngine implements AsyncDisposable {
  readonly #log: Logger;
  #worker: Worker | undefined;
  #port: MessagePort | undefined;
  #wakeFd = -1;
  #nextId = 1;
  readonly #entries = new Map<number, Entry>();
  #disposed = false;

  readonly #syncs = new Map<number, () => void>();
  #nextSync = 1;

  constructor(log: Logger) {
    this.#log = log;
    // Our own temporary files are forgotten only once their events have been read and hidden.
    ownTempFiles.setBarrier(() => this.sync());
  }

  /**
   * Resolves once the watch thread has read (and this thread received) every event the kernel
   * had queued when it was called. Immediate when nothing is watched.
   */
  sync(): Promise<void> {
    if (!this.#worker || this.#entries.size === 0) return Promise.resolve();
    const token = this.#nextSync++;
    return new Promise((resolve) => {
      this.#syncs.set(token, resolve);
      this.#send({ op: "sync", token });
    });
  }

  /** Number of live watches (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Watches `root` (a directory that exists). Resolves once the kernel watches are in place, so
   * any change after that is reported. Fails with ResourceExhausted at the inotify limits.
   * `exclude`: globs (exclude-globs.ts, already validated) whose paths get neither events nor watches.
   */
  async watch(root: string, recursive: boolean, sink: WatchSink, exclude: readonly string[] = []): Promise<WatchHandle> {
    if (this.#disposed) throw new EnvdError(Code.Unavailable, "the daemon is shutting down");
    this.#ensureWorker();
    const id = this.#nextId++;
    const armed = deferred<number>();
    this.#entries.set(id, { sink, armed });
    this.#send({ op: "watch", id, root, recursive, ...(exclude.length > 0 ? { exclude: [...exclude] } : {}) });
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      if (this.#entries.delete(id)) this.#send({ op: "unwatch", id });
    };
    try {
      const watches = await armed.promise;
      return { watches, close };
    } catch (err) {
      close();
      throw err;
    }
  }

  #ensureWorker(): void {
    if (this.#worker) return;
    const libc = loadLibc();
    if (!libc) throw new EnvdError(Code.Unimplemented, `watching is not available: native calls unavailable (${libcLoadError()})`);
    const fd = libc.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) throw watchStartError(libc.errno(), "eventfd");
    // node:worker_threads is loaded with the first watch, not at every start (~0.4 ms on Bun).
    const { MessageChannel, Worker } = process.getBuiltinModule("node:worker_threads");
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WORKER_URL, {
      workerData: { wakeFd: fd, commands: port2 },
      transferList: [port2],
      name: "envd-watch",
    });
    worker.unref();
    worker.on("message", (m: WorkerMessage) => this.#onMessage(m));
    worker.on("error", (err: Error) => this.#onWorkerDeath(`the watch thread failed: ${err.message}`));
    worker.on("exit", () => this.#onWorkerDeath("the watch thread stopped"));
    this.#worker = worker;
    this.#port = port1;
    this.#wakeFd = fd;
  }

  #send(cmd: WorkerCommand): void {
    if (!this.#port) return;
    this.#port.postMessage(cmd);
    try {
      writeSync(this.#wakeFd, ONE);
    } catch (err) {
      // EAGAIN: the counter is already non-zero, so a wake-up is pending anyway.
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
    }
  }

  #onMessage(m: WorkerMessage): void {
    switch (m.t) {
      case "fatal":
        this.#log.error("watch thread failed", { err: m.message });
        this.#onWorkerDeath(`the watch thread failed: ${m.message}`);
        return;
      case "synced":
        this.#syncs.get(m.token)?.();
        this.#syncs.delete(m.token);
        return;
      case "armed": {
        const entry = this.#entries.get(m.id);
        if (!entry) return;
        entry.armed?.resolve(m.watches);
        entry.armed = undefined;
        return;
      }
      case "events": {
        const entry = this.#entries.get(m.id);
        if (!entry) return;
        const events = ownTempFiles.rewriteWatchEvents(m.events);
        if (events.length > 0) entry.sink.onEvents(events);
        return;
      }
      case "end": {
        const entry = this.#entries.get(m.id);
        if (!entry) return;
        this.#entries.delete(m.id);
        if (entry.armed) {
          entry.armed.reject(m.kind === "failed" ? watchStartError(m.errno ?? 0, m.path ?? "") : endError(m.kind));
          return;
        }
        entry.sink.onEnd(m.kind === "gone" ? { kind: "gone" } : { kind: "error", error: endError(m.kind, m.errno, m.path) });
        return;
      }
    }
  }

  #onWorkerDeath(message: string): void {
    if (!this.#worker) return;
    this.#worker = undefined;
    // No event can come any more: nothing to wait for.
    for (const resolve of this.#syncs.values()) resolve();
    this.#syncs.clear();
    this.#port?.close();
    this.#port = undefined;
    if (this.#wakeFd >= 0) {
      const libc = loadLibc();
      libc?.close(this.#wakeFd);
      this.#wakeFd = -1;
    }
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    const error = new EnvdError(Code.Internal, message);
    for (const e of entries) {
      if (e.armed) e.armed.reject(error);
      else if (!this.#disposed) e.sink.onEnd({ kind: "error", error });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const worker = this.#worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    this.#send({ op: "exit" });
    const timer = setTimeout(() => void worker.terminate(), EXIT_WAIT_MS);
    timer.unref();
    await exited;
    clearTimeout(timer);
    this.#onWorkerDeath("the daemon is shutting down");
  }
}

const ONE = (() => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(1n);
  return b;
})();

/** An inotify limit as it applies to the daemon: the user namespace's own value where there is one. */
function limit(name: "max_user_instances" | "max_user_watches" | "max_queued_events"): string {
  const perNamespace = { max_user_instances: "max_inotify_instances", max_user_watches: "max_inotify_watches" } as const;
  const paths = name === "max_queued_events" ? [] : [`/proc/sys/user/${perNamespace[name]}`];
  for (const path of [...paths, `/proc/sys/fs/inotify/${name}`]) {
    try {
      return readFileSync(path, "utf8").trim();
    } catch {}
  }
  return "?";
}

/** A watch that could not start: the inotify limits are ResourceExhausted and say which. */
function watchStartError(errno: number, path: string): EnvdError {
  switch (errno) {
    case 24: // EMFILE from inotify_init1
      return new EnvdError(
        Code.ResourceExhausted,
        `inotify instance limit reached (fs.inotify.max_user_instances=${limit("max_user_instances")}): too many watches are open; stop some`,
      );
    case 23: // ENFILE
      return new EnvdError(Code.ResourceExhausted, "too many open files in the system: cannot start a watch");
    case 12: // ENOMEM
      return new EnvdError(Code.ResourceExhausted, "out of kernel memory for inotify: cannot start a watch");
    case 28: // ENOSPC
      return endError("watch-limit");
    case 2:
      return new EnvdError(Code.NotFound, `path ${path} not found`);
    case 20:
      return new EnvdError(Code.InvalidArgument, `path ${path} is not a directory`);
    case 13:
    case 1:
      return new EnvdError(Code.PermissionDenied, `cannot watch ${path}: permission denied`);
    default:
      return new EnvdError(Code.Internal, `cannot watch ${path}: errno ${errno}`);
  }
}

function endError(kind: "overflow" | "watch-limit" | "gone" | "failed", errno?: number, path?: string): EnvdError {
  switch (kind) {
    case "overflow":
      return new EnvdError(
        Code.ResourceExhausted,
        `too many filesystem events at once: the kernel event queue (fs.inotify.max_queued_events=${limit("max_queued_events")}) overflowed and events were lost; watch again to continue`,
      );
    case "watch-limit":
      return new EnvdError(
        Code.ResourceExhausted,
        `inotify watch limit reached (fs.inotify.max_user_watches=${limit("max_user_watches")}): watch a smaller tree or raise the limit`,
      );
    case "gone":
      return new EnvdError(Code.NotFound, "the watched directory is gone");
    default:
      return new EnvdError(Code.Internal, `watching ${path ?? "?"} failed: errno ${errno ?? "?"}`);
  }
}
