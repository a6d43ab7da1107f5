/**
 * One child process, owned by the ProcessTable: its stdin, its output fan-out, signals and exit.
 *
 * The lifetime is independent of any request: a handle ends only when the child exits, is
 * signalled, passes its deadline, or the daemon shuts down. The end is taken from the child's exit
 * (waitpid), not from pipe EOF: a background grandchild that keeps stdout open can delay the end by
 * at most `drainGraceMs` of silence.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Code, EnvdError, spawnError } from "../errors.ts";
import { inputStateError } from "./input-error.ts";
import type { LaunchPlan } from "./launch-plan.ts";
import { type OutputLogSink, OutputLogRecorder } from "./output-log.ts";
import { endReason, type OomProbe, oomProbe } from "./end-reason.ts";
import { type ExitStatus, exitStatusOf, signalNameOf } from "./exit-status.ts";
import { type FanoutLimits, OutputFanout } from "./output-fanout.ts";
import type { OutputOffsets, OutputStream } from "./output-history.ts";
import type { Subscription } from "./output-subscription.ts";
import { type PtyChild, spawnPty } from "./pty.ts";
import { waitForDrain } from "../sys/wait-drain.ts";

export interface ProcessConfigInfo {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd: string | undefined;
}

export interface StartOptions {
  plan: LaunchPlan;
  /** The config exactly as the client sent it (List reports it back). */
  config: ProcessConfigInfo;
  tag: string | undefined;
  pty: { cols: number; rows: number } | undefined;
  /** Keep a stdin pipe (pipes only); otherwise stdin is /dev/null. */
  stdin: boolean;
  /** Absolute lifetime limit in ms; the group is SIGKILLed when it passes. */
  timeoutMs: number | undefined;
  /** Where output goes as log records (when a log collector is configured). */
  outputLog?: OutputLogSink | undefined;
  /** The cgroup the child joins (its memory.events tells an OOM kill apart). */
  cgroupDir?: string | undefined;
  drainGraceMs?: number;
  fanoutLimits?: Partial<FanoutLimits>;
}

const DEFAULT_DRAIN_GRACE_MS = 250;

export class ProcessHandle {
  readonly pid: number;
  readonly tag: string | undefined;
  readonly config: ProcessConfigInfo;
  readonly isPty: boolean;
  readonly startedAt = Date.now();
  readonly output: OutputFanout<ExitStatus>;
  readonly exited: Promise<ExitStatus>;

  #child: ChildProcess | undefined;
  #pty: PtyChild | undefined;
  #stdinOpen: boolean;
  #status: ExitStatus | undefined;
  #timeout: NodeJS.Timeout | undefined;
  #drainTimer: NodeJS.Timeout | undefined;
  #openStreams = 0;
  #drainGraceMs: number;
  #resolveExited!: (s: ExitStatus) => void;
  #exitInfo: ExitStatus | undefined;
  #timedOut = false;
  readonly #timeoutMs: number | undefined;
  /** Signals envd itself sent (SendSignal, the deadline, shutdown): not "from outside". */
  readonly #sentSignals = new Set<string>();
  readonly #oom: OomProbe;
  readonly #outputLog: OutputLogRecorder | undefined;

  private constructor(opts: StartOptions, pid: number) {
    this.pid = pid;
    this.tag = opts.tag;
    this.config = opts.config;
    this.isPty = opts.pty !== undefined;
    this.#stdinOpen = !this.isPty && opts.stdin;
    this.#drainGraceMs = opts.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS;
    this.output = new OutputFanout<ExitStatus>(opts.fanoutLimits);
    this.#timeoutMs = opts.timeoutMs;
    this.#oom = oomProbe(opts.cgroupDir);
    this.#outputLog = opts.outputLog ? new OutputLogRecorder(opts.outputLog, pid) : undefined;
    this.exited = new Promise((resolve) => {
      this.#resolveExited = resolve;
    });
  }

  /** Spawns the child. Throws EnvdError (InvalidArgument) when it cannot be started. */
  static async start(opts: StartOptions): Promise<ProcessHandle> {
    return opts.pty ? ProcessHandle.#startPty(opts, opts.pty) : ProcessHandle.#startPipes(opts);
  }

  static async #startPipes(opts: StartOptions): Promise<ProcessHandle> {
    const [file, ...args] = opts.plan.argv;
    const child = spawn(file, args, {
      cwd: opts.plan.cwd,
      env: opts.plan.env,
      detached: true, // setsid: own session and process group
      stdio: [opts.stdin ? "pipe" : "ignore", "pipe", "pipe"],
      ...(opts.plan.uid !== undefined ? { uid: opts.plan.uid } : {}),
      ...(opts.plan.gid !== undefined ? { gid: opts.plan.gid } : {}),
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once("spawn", () => resolve(child.pid as number));
      child.once("error", (err) => reject(spawnError(err)));
    });
    const handle = new ProcessHandle(opts, pid);
    handle.#child = child;
    child.stdin?.on("error", () => {
      handle.#stdinOpen = false; // EPIPE once the child is gone: reported to the next writer
    });
    handle.output.setFlowControl({
      pause: () => {
        child.stdout?.pause();
        child.stderr?.pause();
        handle.#clearDrainTimer();
      },
      resume: () => {
        child.stdout?.resume();
        child.stderr?.resume();
        handle.#armDrainTimer();
      },
    });
    for (const [stream, readable] of [
      ["stdout", child.stdout],
      ["stderr", child.stderr],
    ] as const) {
      if (!readable) continue;
      handle.#openStreams++;
      readable.on("data", (data: Buffer) => handle.#onData(stream, data));
      readable.once("close", () => handle.#onStreamClosed());
      readable.on("error", () => {});
    }
    child.once("exit", (code, signal) => handle.#onExit(exitStatusOf(code, signal)));
    handle.#armTimeout(opts.timeoutMs);
    return handle;
  }

  static async #startPty(opts: StartOptions, size: { cols: number; rows: number }): Promise<ProcessHandle> {
    let handle: ProcessHandle | undefined;
    const early: Buffer[] = [];
    let earlyExit: ExitStatus | undefined;
    let earlyClose = false;
    let pty: PtyChild;
    try {
      pty = spawnPty({
        argv: opts.plan.argv,
        cwd: opts.plan.cwd,
        env: opts.plan.env,
        cols: size.cols,
        rows: size.rows,
        onData: (data) => (handle ? handle.#onData("pty", data) : early.push(data)),
        onExit: (code, signal) => {
          const status = exitStatusOf(code, signal);
          if (handle) handle.#onExit(status);
          else earlyExit = status;
        },
        onClose: () => {
          if (handle) handle.#onStreamClosed();
          else earlyClose = true;
        },
      });
    } catch (err) {
      throw spawnError(err);
    }
    handle = new ProcessHandle(opts, pty.pid);
    handle.#pty = pty;
    handle.#openStreams = 1;
    handle.output.setFlowControl({
      pause: () => {
        pty.pause();
        handle.#clearDrainTimer();
      },
      resume: () => {
        pty.resume();
        handle.#armDrainTimer();
      },
    });
    for (const data of early) handle.#onData("pty", data);
    if (earlyClose) handle.#onStreamClosed();
    if (earlyExit) handle.#onExit(earlyExit);
    handle.#armTimeout(opts.timeoutMs);
    return handle;
  }

  get hasStdin(): boolean {
    return this.#stdinOpen;
  }

  get status(): ExitStatus | undefined {
    return this.#status;
  }

  get timedOut(): boolean {
    return this.#timedOut;
  }

  /** Subscribes to the output; see OutputFanout.subscribe (throws OutOfRange for a bad `from`). */
  subscribe(replay: boolean, from?: OutputOffsets): Subscription<ExitStatus> {
    return this.output.subscribe(from ? { replay, from } : { replay });
  }

  /** Writes to stdin (pipes) and resolves once the data is handed to the kernel or buffered under the high-water mark. */
  async writeStdin(data: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.isPty) throw inputStateError("pty-has-no-stdin");
    const stdin = this.#child?.stdin;
    if (!this.#stdinOpen || !stdin || stdin.destroyed || stdin.writableEnded) {
      throw inputStateError(this.#status ? "ended" : "stdin-closed");
    }
    if (data.byteLength === 0) return;
    if (!stdin.write(data)) await waitForDrain(stdin, signal, () => inputStateError("stdin-closed-while-writing"));
  }

  /** Writes to the terminal (PTY processes only). */
  writePty(data: Uint8Array): void {
    if (!this.#pty) throw inputStateError("no-pty");
    if (this.#status || this.#exitInfo) throw inputStateError("ended");
    if (data.byteLength > 0) this.#pty.write(data);
  }

  /** EOF on stdin. Repeating it, or a process started without stdin, is fine. */
  closeStdin(): void {
    if (this.isPty) {
      throw inputStateError("pty-close-stdin");
    }
    this.#stdinOpen = false;
    this.#child?.stdin?.end();
  }

  resize(cols: number, rows: number): void {
    if (!this.#pty) throw inputStateError("no-pty");
    if (cols < 1 || rows < 1 || cols > 65535 || rows > 65535) {
      throw new EnvdError(Code.InvalidArgument, `invalid PTY size ${cols}x${rows}`);
    }
    if (this.#status) return; // resizing after exit is harmless
    this.#pty.resize(cols, rows);
  }

  /** Signals the whole process group (the child is a session leader); falls back to the pid. */
  signal(sig: NodeJS.Signals): void {
    if (this.#status) return;
    this.#sentSignals.add(sig);
    try {
      process.kill(-this.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") {
        throw new EnvdError(Code.Internal, `failed to send ${sig}: ${(err as Error).message}`, { cause: err });
      }
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone: the exit event is on its way
      }
    }
  }

  #armTimeout(timeoutMs: number | undefined): void {
    if (!timeoutMs || timeoutMs <= 0) return;
    this.#timeout = setTimeout(() => {
      this.#timedOut = true;
      this.signal("SIGKILL");
    }, timeoutMs);
    this.#timeout.unref();
  }

  /** Each read goes to the fan-out whole; data events are sized there (coalesced up to 1 MiB). */
  #onData(stream: OutputStream, data: Buffer): void {
    this.output.push(stream, data);
    this.#outputLog?.feed(stream, data);
    if (this.#exitInfo) this.#armDrainTimer();
  }

  #onStreamClosed(): void {
    this.#openStreams--;
    if (this.#openStreams <= 0) this.#finish();
  }

  #onExit(status: ExitStatus): void {
    if (this.#exitInfo) return;
    this.#exitInfo = status;
    if (this.#timeout) clearTimeout(this.#timeout);
    this.#stdinOpen = false;
    this.#child?.stdin?.destroy();
    if (this.#openStreams <= 0) this.#finish();
    else this.#armDrainTimer();
  }

  /** After exit, output that is still flowing may finish; silence for drainGraceMs ends it. */
  #armDrainTimer(): void {
    if (!this.#exitInfo || this.#status) return;
    this.#clearDrainTimer();
    if (this.output.paused) return;
    this.#drainTimer = setTimeout(() => this.#finish(), this.#drainGraceMs);
    this.#drainTimer.unref();
  }

  #clearDrainTimer(): void {
    if (this.#drainTimer) clearTimeout(this.#drainTimer);
    this.#drainTimer = undefined;
  }

  #finish(): void {
    let info = this.#exitInfo;
    if (!info || this.#status) return;
    const reason = endReason({
      signal: signalNameOf(info),
      timedOut: this.#timedOut,
      timeoutMs: this.#timeoutMs,
      sentByEnvd: this.#sentSignals,
      oom: this.#oom,
    });
    if (reason !== undefined) info = { ...info, error: reason };
    this.#outputLog?.end();
    this.#clearDrainTimer();
    this.#status = info;
    this.#child?.stdout?.destroy();
    this.#child?.stderr?.destroy();
    // The record outlives the child (ProcessTable keeps it 30 s): let go of the ChildProcess, or
    // under Bun it pins both 64 KiB pipe buffers (1,000 ended commands held 127 MiB).
    this.#child = undefined;
    this.output.setFlowControl({ pause() {}, resume() {} });
    this.#pty?.close();
    this.output.end(info);
    this.#resolveExited(info);
  }
}
