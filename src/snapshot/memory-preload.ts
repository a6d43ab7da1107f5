/**
 * `/memory/preload` (Wrenn; envd-rs `src/http/memory.rs`): after a restore whose memory is loaded
 * on demand (Cloud Hypervisor `memory_restore_mode=ondemand`), pages never touched since exist
 * only in the source snapshot; the next snapshot would write them as holes that read back as
 * zeros. The host's Pause therefore starts this loader and waits for it before snapshotting.
 *
 * One loader per lifecycle (the `lifecycle_id` /init sets):
 *
 *   idle ──start()──▶ running ──walk ends──▶ done | failed
 *                        └──cancel()──▶ (walk stops) ──▶ cancelled
 *
 * `start()` is idempotent: while running or done it only reports. After `failed` or `cancelled` it
 * starts a new walk (envd-rs reports the old result forever; a retry that can work is more useful
 * and the host's Pause treats both the same way until the state is `done`). A new lifecycle
 * (`newLifecycle()`, from /init) stops a running walk, discards whatever it later reports, and goes
 * back to idle: a walk frozen by a pause and thawed in the next lifecycle publishes nothing.
 *
 * The walk runs on a worker thread (memory-preload-worker.ts); tests inject their own.
 */
import type { Logger } from "../log.ts";
import { workerModule } from "../sys/worker-url.ts";
import { CONTROL_BYTES, controlViews, type WalkRequest, type WalkResult } from "./memory-preload-protocol.ts";

export type PreloadState = "idle" | "running" | "done" | "failed" | "cancelled";
export type PreloadSource = "/dev/mem" | "/proc/kcore" | "";

/** The JSON of GET/POST /memory/preload, field for field as envd-rs. */
export interface PreloadStatus {
  state: PreloadState;
  regions: number;
  pages: number;
  bytes: number;
  elapsed_sec: number;
  source: PreloadSource;
  error: string | null;
}

/** A walk in progress. */
export interface PreloadWalk {
  /** Pages and bytes read so far. */
  progress(): { pages: number; bytes: number };
  /** Asks the walk to stop; `done` then resolves with `stopped: true`. Idempotent. */
  stop(): void;
  /** Settles once the walk has ended; never rejects (a failure is a WalkResult). */
  done: Promise<WalkResult>;
}

export type StartWalk = () => PreloadWalk;

export interface MemoryPaths {
  iomem: string;
  devMem: string;
  kcore: string;
}

/** The worker's path under src/ (where the compiled binary has it: src/sys/worker-url.ts). */
export const MEMORY_PRELOAD_WORKER = "snapshot/memory-preload-worker.ts";

export const DEFAULT_MEMORY_PATHS: MemoryPaths = { iomem: "/proc/iomem", devMem: "/dev/mem", kcore: "/proc/kcore" };

/** The production walk: the worker thread over the given files. */
export function workerWalk(paths: MemoryPaths = DEFAULT_MEMORY_PATHS): StartWalk {
  return () => {
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const { flags, counters } = controlViews(control);
    const request: WalkRequest = { iomemPath: paths.iomem, devMemPath: paths.devMem, kcorePath: paths.kcore, control };
    const { Worker } = process.getBuiltinModule("node:worker_threads");
    const worker = new Worker(
      workerModule(MEMORY_PRELOAD_WORKER, new URL("./memory-preload-worker.ts", import.meta.url), import.meta.url),
      { workerData: request, name: "envd-memory-preload" },
    );
    worker.unref();
    const done = new Promise<WalkResult>((resolve) => {
      worker.once("message", (m: WalkResult) => resolve(m));
      worker.once("error", (err: Error) => resolve({ ok: false, stopped: false, error: `preload thread failed: ${err.message}` }));
      worker.once("exit", (code) => resolve({ ok: false, stopped: Atomics.load(flags, 0) !== 0, error: `preload thread exited (${code})` }));
    });
    return {
      progress: () => ({ pages: counters[0] ?? 0, bytes: counters[1] ?? 0 }),
      stop: () => {
        Atomics.store(flags, 0, 1);
      },
      done,
    };
  };
}

interface Run {
  lifecycle: number;
  walk: PreloadWalk;
  startedAt: number;
  cancelled: boolean;
}

export class MemoryPreloader implements AsyncDisposable {
  readonly #log: Logger;
  readonly #startWalk: StartWalk;
  #lifecycle = 0;
  #run: Run | undefined;
  #status: PreloadStatus = idleStatus();

  constructor(opts: { log: Logger; startWalk?: StartWalk }) {
    this.#log = opts.log;
    this.#startWalk = opts.startWalk ?? workerWalk();
  }

  /** Starts the loader unless it runs or is done in this lifecycle; returns the status at once. */
  start(): PreloadStatus {
    const state = this.#status.state;
    if (state === "running" || state === "done") return this.status();
    const run: Run = { lifecycle: this.#lifecycle, walk: this.#startWalk(), startedAt: performance.now(), cancelled: false };
    this.#run = run;
    this.#status = { ...idleStatus(), state: "running" };
    this.#log.info("memory preload started", { lifecycle: run.lifecycle });
    void run.walk.done.then((result) => this.#finish(run, result));
    return this.status();
  }

  /** The current status; while running, with the walk's progress so far. */
  status(): PreloadStatus {
    const run = this.#run;
    if (this.#status.state === "running" && run) {
      const { pages, bytes } = run.walk.progress();
      return { ...this.#status, pages, bytes, elapsed_sec: seconds(performance.now() - run.startedAt) };
    }
    return { ...this.#status };
  }

  /** Stops a running walk; it ends as `cancelled`. No-op otherwise. */
  cancel(): void {
    const run = this.#run;
    if (!run || this.#status.state !== "running") return;
    run.cancelled = true;
    run.walk.stop();
  }

  /** A new lifecycle began (/init with a new lifecycle_id): stop and forget the walk, back to idle. */
  newLifecycle(): void {
    this.#lifecycle++;
    const run = this.#run;
    this.#run = undefined;
    if (run && this.#status.state === "running") {
      run.walk.stop();
      this.#log.info("memory preload stopped: a new lifecycle began", { lifecycle: run.lifecycle });
    }
    this.#status = idleStatus();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const run = this.#run;
    this.newLifecycle();
    await run?.walk.done;
  }

  #finish(run: Run, result: WalkResult): void {
    if (run !== this.#run || run.lifecycle !== this.#lifecycle) {
      this.#log.info("memory preload result discarded: stale lifecycle", { lifecycle: run.lifecycle });
      return;
    }
    const elapsed_sec = seconds(performance.now() - run.startedAt);
    if (result.ok) {
      const state: PreloadState = run.cancelled ? "cancelled" : "done";
      this.#status = { state, regions: result.regions, pages: result.pages, bytes: result.bytes, elapsed_sec, source: result.source, error: null };
      this.#log.info(`memory preload ${state}`, { regions: result.regions, pages: result.pages, elapsedSec: elapsed_sec, source: result.source });
    } else if (run.cancelled) {
      this.#status = { ...idleStatus(), state: "cancelled", elapsed_sec };
    } else {
      this.#status = { ...idleStatus(), state: "failed", elapsed_sec, error: result.error };
      this.#log.warn("memory preload failed", { err: result.error });
    }
  }
}

function idleStatus(): PreloadStatus {
  return { state: "idle", regions: 0, pages: 0, bytes: 0, elapsed_sec: 0, source: "", error: null };
}

function seconds(ms: number): number {
  return Math.round(ms * 1000) / 1_000_000;
}
