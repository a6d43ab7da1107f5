/**
 * One small interface over the two PTY implementations.
 *
 * On Bun, `Bun.spawn({ terminal })`: node-pty reads the master through tty.ReadStream, which Bun
 * turns into an EAGAIN error and SIGHUP for the child (docs/architecture.md, "Processes"). On Node,
 * `@lydell/node-pty` (prebuilt). Both create a new session with the pty as controlling terminal,
 * so the child is a process-group leader and signals to -pid reach its whole tree.
 */
import { readdirSync, readlinkSync, writeSync } from "node:fs";
import { createRequire } from "node:module";

export interface PtySpawnOptions {
  argv: [string, ...string[]];
  cwd: string;
  env: Record<string, string>;
  cols: number;
  rows: number;
  onData(data: Buffer): void;
  /** The process exited (from waitpid). Output may still arrive until `onClose`. */
  onExit(code: number | null, signal: NodeJS.Signals | number | null): void;
  /** The master reached EOF or EIO: no more output. */
  onClose(): void;
}

export interface PtyChild {
  readonly pid: number;
  write(data: Uint8Array): void;
  resize(cols: number, rows: number): void;
  pause(): void;
  resume(): void;
  /** Closes the master; the session gets SIGHUP. Idempotent. */
  close(): void;
}

declare const Bun: {
  spawn(
    argv: string[],
    options: {
      cwd: string;
      env: Record<string, string>;
      terminal: {
        cols: number;
        rows: number;
        name?: string;
        data(terminal: unknown, data: Uint8Array): void;
        exit?(terminal: unknown, code: number, signal: string | null): void;
      };
      onExit?(proc: unknown, exitCode: number | null, signalCode: number | null): void;
    },
  ): {
    pid: number;
    terminal: { write(data: Uint8Array): number; resize(cols: number, rows: number): void; close(): void; closed: boolean; inputFlags: number };
    signalCode: NodeJS.Signals | null;
    exitCode: number | null;
    exited: Promise<number>;
  };
};

export const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

export function spawnPty(options: PtySpawnOptions): PtyChild {
  return isBun ? spawnBunPty(options) : spawnNodePty(options);
}

/** termios c_iflag IXON: the line discipline honours STOP (^S) and START (^Q) from the master side. */
const IXON = 0o2000;
const XOFF = Uint8Array.of(0x13);
const XON = Uint8Array.of(0x11);

/**
 * Bun's terminal reads the master itself and has no pause. Flow control is the terminal's own:
 * while the terminal has IXON set (a shell, `cat`, build output: the default), pause writes STOP
 * (^S) to the master, so the line discipline stops output and the program blocks in write();
 * resume writes START (^Q). A program that turned IXON off (raw mode: vim, htop, less) cannot be
 * held this way; its output is then bounded by the fan-out's per-subscriber hard cap only.
 *
 * STOP and START go to the master fd with a synchronous write, not through `terminal.write`:
 * Bun queues that write behind its own reading of the master, so under heavy output a STOP
 * arrived only after ~40 MB had gone by (measured). The fd is the /dev/ptmx descriptor the spawn
 * opened (found by comparing /proc/self/fd before and after it); when it cannot be found or the
 * write would block, the queued write is used. With both control characters on one synchronous
 * path their order is kept; user input stays on Bun's queued path (IXANY, off by default, would let
 * typed input restart output while paused).
 */
function spawnBunPty(o: PtySpawnOptions): PtyChild {
  let closed = false;
  let stopSent = false;
  const onClose = () => {
    if (closed) return;
    closed = true;
    o.onClose();
  };
  const before = ptmxFds();
  const proc = Bun.spawn(o.argv, {
    cwd: o.cwd,
    env: o.env,
    terminal: {
      cols: o.cols,
      rows: o.rows,
      data: (_t, data) => o.onData(Buffer.from(data.buffer, data.byteOffset, data.byteLength)),
      exit: () => onClose(),
    },
  });
  const master = before === undefined ? undefined : ptmxFds()?.find((fd) => !before.includes(fd));
  void proc.exited.then(() => o.onExit(proc.exitCode, proc.signalCode));
  const ixon = () => {
    try {
      return (proc.terminal.inputFlags & IXON) !== 0;
    } catch {
      return false;
    }
  };
  const send = (data: Uint8Array) => {
    if (!proc.terminal.closed) proc.terminal.write(data);
  };
  /** A control character now, ahead of anything Bun has queued. */
  const control = (ch: Uint8Array) => {
    if (closed || proc.terminal.closed) return;
    if (master !== undefined && isPtmx(master)) {
      try {
        if (writeSync(master, ch) === 1) return;
      } catch {
        // EAGAIN (the input queue is full) or the fd went: fall back to the queued write.
      }
    }
    send(ch);
  };
  return {
    pid: proc.pid,
    write: (data) => send(data),
    resize: (cols, rows) => proc.terminal.resize(cols, rows),
    pause: () => {
      if (!stopSent && ixon()) {
        stopSent = true;
        control(XOFF);
      }
    },
    resume: () => {
      if (stopSent) {
        stopSent = false;
        control(XON);
      }
    },
    close: () => {
      if (!proc.terminal.closed) proc.terminal.close();
      onClose();
    },
  };
}

/** This process's descriptors open on /dev/ptmx (PTY masters), or undefined without /proc. */
function ptmxFds(): number[] | undefined {
  try {
    return readdirSync("/proc/self/fd")
      .map(Number)
      .filter((fd) => isPtmx(fd));
  } catch {
    return undefined;
  }
}

function isPtmx(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === "/dev/ptmx";
  } catch {
    return false;
  }
}

interface NodePty {
  spawn(
    file: string,
    args: string[],
    options: { name: string; cols: number; rows: number; cwd: string; env: Record<string, string>; encoding: null },
  ): {
    pid: number;
    onData(cb: (data: Buffer | string) => void): void;
    onExit(cb: (e: { exitCode: number; signal?: number }) => void): void;
    write(data: Buffer | string): void;
    resize(cols: number, rows: number): void;
    pause(): void;
    resume(): void;
    kill(signal?: string): void;
    destroy?(): void;
  };
}

let nodePty: NodePty | undefined;

function spawnNodePty(o: PtySpawnOptions): PtyChild {
  nodePty ??= createRequire(import.meta.url)("@lydell/node-pty") as NodePty;
  const [file, ...args] = o.argv;
  const term = nodePty.spawn(file, args, {
    name: o.env.TERM ?? "xterm",
    cols: o.cols,
    rows: o.rows,
    cwd: o.cwd,
    env: o.env,
    encoding: null,
  });
  let closed = false;
  term.onData((data) => o.onData(typeof data === "string" ? Buffer.from(data) : data));
  // node-pty reports exit only after the master hit EOF/EIO (it drains before firing onExit).
  term.onExit(({ exitCode, signal }) => {
    o.onExit(signal ? null : exitCode, signal ? signal : null);
    if (!closed) {
      closed = true;
      o.onClose();
    }
  });
  return {
    pid: term.pid,
    write: (data) => term.write(Buffer.from(data)),
    resize: (cols, rows) => term.resize(cols, rows),
    pause: () => term.pause(),
    resume: () => term.resume(),
    close: () => {
      if (closed) return;
      closed = true;
      term.destroy?.();
      o.onClose();
    },
  };
}
