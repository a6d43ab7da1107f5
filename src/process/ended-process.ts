/**
 * What the ProcessTable keeps of a process that ended and that nobody reads any more, for a late
 * Connect (replay or resume) and for input calls that must answer "already exited": the pid, the
 * tag, whether it had a PTY, the end status and the retained output, in a handful of objects.
 *
 * Why not keep the ProcessHandle: a handle is ~50 small objects (closures, timers, sets, the
 * fanout's state) allocated while the process ran. After a burst of commands, JSC's non-moving
 * heap keeps every 16 KiB block that still holds one of them, so 200 ended commands' handles kept
 * ~12 MiB resident for their 30 s of retention (docs/benchmarks.md). The table packs its ended
 * handles together just before the heap trimmer collects: the records are then allocated back to
 * back, and the handles' blocks can be given back.
 */
import { inputStateError } from "./input-error.ts";
import type { ExitStatus } from "./exit-status.ts";
import { type FanoutLimits, OutputFanout } from "./output-fanout.ts";
import type { OutputOffsets, PackedHistory } from "./output-history.ts";
import type { ProcessHandle } from "./process-handle.ts";
import type { Subscription } from "./output-subscription.ts";

/** What a record is made from (a ProcessHandle). */
export type EndedSource = Pick<ProcessHandle, "pid" | "tag" | "isPty" | "status" | "output">;

export class EndedProcess {
  readonly pid: number;
  readonly tag: string | undefined;
  readonly isPty: boolean;
  /** The end status as JSON: one fresh string instead of an object and strings made at the exit. */
  readonly #status: string;
  readonly #output: PackedHistory;
  readonly #limits: Readonly<FanoutLimits>;

  private constructor(handle: EndedSource, status: ExitStatus, output: PackedHistory) {
    this.pid = handle.pid;
    this.tag = handle.tag;
    this.isPty = handle.isPty;
    this.#status = JSON.stringify(status);
    this.#output = output;
    this.#limits = handle.output.limits;
  }

  /**
   * The record of an ended handle; undefined while it runs, while someone reads its output, or
   * when its retained output costs more than `maxBytes` (OutputFanout.pack).
   */
  static of(handle: EndedSource, maxBytes = Number.POSITIVE_INFINITY): EndedProcess | undefined {
    const status = handle.status;
    if (!status) return undefined;
    const output = handle.output.pack(maxBytes);
    return output ? new EndedProcess(handle, status, output) : undefined;
  }

  get status(): ExitStatus {
    const s = JSON.parse(this.#status) as ExitStatus;
    return { exitCode: s.exitCode, exited: s.exited, status: s.status, error: s.error };
  }

  /** Bytes of output kept for replay. */
  get retainedOutputBytes(): number {
    return this.#output.bytes.byteLength;
  }

  /** A reader of the retained output, then the end; as ProcessHandle.subscribe (OutOfRange for a bad `from`). */
  subscribe(replay: boolean, from?: OutputOffsets): Subscription<ExitStatus> {
    const output = OutputFanout.unpack<ExitStatus>(this.#output, this.status, this.#limits);
    return output.subscribe(from ? { replay, from } : { replay });
  }

  /** As ProcessHandle.writeStdin on an ended process. */
  async writeStdin(_data: Uint8Array, _signal?: AbortSignal): Promise<void> {
    throw inputStateError(this.isPty ? "pty-has-no-stdin" : "ended");
  }

  /** As ProcessHandle.writePty on an ended process. */
  writePty(_data: Uint8Array): void {
    throw inputStateError(this.isPty ? "ended" : "no-pty");
  }
}
