/**
 * The background loops that must be still while a snapshot is taken (port scanner, reclaimer,
 * CPU sampler, heap trimmer, metadata poller): stopped before a prepare, started after the restore.
 */
import type { Logger } from "../log.ts";

/** Something that runs in the background and must be still while a snapshot is taken. */
export interface BackgroundLoop {
  readonly name: string;
  /** Starts (again). Idempotent. */
  start(): void;
  /** Stops; resolves when no work is in flight. Idempotent. */
  stop(): void | Promise<void>;
}

/** How long prepare waits for one loop to stop before going on without it. */
const LOOP_STOP_TIMEOUT_MS = 2_000;

/**
 * The loops the daemon runs in the background. Owners register a loop once it runs; the registry
 * stops them all before a snapshot and starts them again after the restore.
 */
export class LoopRegistry {
  readonly #loops = new Set<BackgroundLoop>();
  #quiesced = false;
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  get quiesced(): boolean {
    return this.#quiesced;
  }

  names(): string[] {
    return [...this.#loops].map((l) => l.name);
  }

  /** Registers a running loop; disposing unregisters it. A loop registered while quiesced is stopped at once. */
  register(loop: BackgroundLoop): Disposable {
    this.#loops.add(loop);
    if (this.#quiesced) void Promise.resolve(loop.stop()).catch(() => {});
    return { [Symbol.dispose]: () => void this.#loops.delete(loop) };
  }

  /** Stops every loop (in parallel) and waits for each, at most LOOP_STOP_TIMEOUT_MS. */
  async stopAll(): Promise<string[]> {
    this.#quiesced = true;
    const stopped: string[] = [];
    await Promise.all(
      [...this.#loops].map(async (loop) => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<"timeout">((r) => {
          timer = setTimeout(() => r("timeout"), LOOP_STOP_TIMEOUT_MS);
        });
        try {
          const outcome = await Promise.race([Promise.resolve(loop.stop()).then(() => "ok" as const), timeout]);
          if (outcome === "timeout") this.#log.warn("loop did not stop in time", { loop: loop.name });
          else stopped.push(loop.name);
        } catch (err) {
          this.#log.warn("loop failed to stop", { loop: loop.name, err: String(err) });
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return stopped.sort();
  }

  /** Starts every loop again. */
  startAll(): string[] {
    this.#quiesced = false;
    const started: string[] = [];
    for (const loop of this.#loops) {
      try {
        loop.start();
        started.push(loop.name);
      } catch (err) {
        this.#log.error("loop failed to start", { loop: loop.name, err: String(err) });
      }
    }
    return started.sort();
  }
}
