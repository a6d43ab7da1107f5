/**
 * A tiny init for when nobody else reaps: the process that is PID 1 (or a child subreaper) runs
 * this instead of the daemon, and runs the daemon as its only child.
 *
 * Why a separate process: orphans are re-parented to PID 1 (or to the nearest subreaper), and
 * reaping them from inside the daemon would race the runtime for the exit status of the daemon's
 * own children (libuv, node-pty and Bun each waitpid their own pids; if we reap one first its exit
 * is lost). Here the only child the runtime owns is the daemon, so "never reap the daemon's pid" is
 * an exact rule and nothing can be stolen. See docs/architecture.md, "Reaping and PID 1".
 *
 * The init also supervises: it forwards SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 to the
 * daemon; if the daemon dies without being asked to (a crash, the OOM killer), it starts it again
 * with a backoff, so a crash no longer takes the whole VM down (a PID 1 that exits panics the kernel).
 * When asked to stop, it waits for the daemon and exits with its status.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import type { Logger } from "../log.ts";
import { libcLoadError, loadLibc, PR_SET_CHILD_SUBREAPER } from "../sys/libc.ts";
import { OrphanReaper } from "./reaper.ts";

/** Set in the daemon child's environment so it runs the daemon, not another init. */
export const INIT_CHILD_ENV = "ENVD_INIT_CHILD";

export type ReaperMode = "auto" | "on" | "off";

/** Whether this process should become the init: "auto" only as PID 1, "on" always (as a subreaper), "off" never. */
export function shouldRunInit(mode: ReaperMode, env: NodeJS.ProcessEnv, pid = process.pid): boolean {
  if (env[INIT_CHILD_ENV] === "1") return false;
  if (mode === "off") return false;
  return mode === "on" || pid === 1;
}

/** How to start this same program again: the runtime, its flags and the script, or a compiled binary. */
export function selfCommand(
  execPath = process.execPath,
  argv: readonly string[] = process.argv,
  execArgv: readonly string[] = process.execArgv,
): { file: string; args: string[] } {
  const script = argv[1] ?? "";
  // `bun build --compile`: argv[1] is the embedded entry point, not a file to pass back.
  const compiled = script.startsWith("/$bunfs/") || script.startsWith("B:/~BUN/");
  return { file: execPath, args: compiled ? argv.slice(2) : [...execArgv, ...argv.slice(1)] };
}

const FORWARDED: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"];
const STOPPING: ReadonlySet<NodeJS.Signals> = new Set(["SIGTERM", "SIGINT", "SIGQUIT"]);
const REAP_INTERVAL_MS = 1_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5_000;
/** A daemon that ran this long counts as healthy: the next crash restarts it at once. */
const HEALTHY_RUN_MS = 30_000;
/** After forwarding a stop signal, SIGKILL the daemon if it is still there after this long. */
const STOP_DEADLINE_MS = 30_000;

export interface InitOptions {
  log: Logger;
  env: NodeJS.ProcessEnv;
}

/** Runs the init until the daemon exits after a stop signal; resolves with the exit code to use. */
export function runInit(opts: InitOptions): Promise<number> {
  const { log } = opts;
  const libc = loadLibc();
  const isPid1 = process.pid === 1;
  if (!libc) {
    log.error("cannot reap orphans: no FFI to libc; zombies will accumulate", { err: libcLoadError() });
  } else if (!isPid1 && libc.prctl(PR_SET_CHILD_SUBREAPER, 1) !== 0) {
    log.warn("prctl(PR_SET_CHILD_SUBREAPER) failed; orphans go to PID 1", { errno: libc.errno() });
  }
  try {
    // The init is small and must outlive everything; the daemon lowers its own score itself.
    writeFileSync("/proc/self/oom_score_adj", "-1000");
  } catch {
    // not root: keep the inherited score
  }

  const self = selfCommand();
  let child: ChildProcess | undefined;
  let stopping: NodeJS.Signals | undefined;
  let backoffMs = RESTART_MIN_MS;
  let restartTimer: NodeJS.Timeout | undefined;
  const reaper = libc ? new OrphanReaper({ libc, isOwn: (pid) => pid === child?.pid, log }) : undefined;
  const reap = () => {
    try {
      reaper?.reapOnce();
    } catch (err) {
      log.error("reaping failed", { err: String(err) });
    }
  };

  return new Promise<number>((resolve) => {
    const start = () => {
      restartTimer = undefined;
      const startedAt = Date.now();
      const c = spawn(self.file, self.args, {
        env: { ...opts.env, [INIT_CHILD_ENV]: "1" },
        stdio: "inherit",
      });
      child = c;
      log.info("init: daemon started", { pid: c.pid, subreaper: !isPid1, pid1: isPid1 });
      c.once("error", (err) => log.error("init: cannot start the daemon", { err: String(err) }));
      c.once("exit", (code, signal) => {
        child = undefined;
        reap();
        if (stopping) {
          const status = code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0);
          log.info("init: daemon stopped", { code, signal, status });
          cleanup();
          resolve(status);
          return;
        }
        if (Date.now() - startedAt >= HEALTHY_RUN_MS) backoffMs = RESTART_MIN_MS;
        log.error("init: daemon exited unexpectedly; restarting", { code, signal, restartInMs: backoffMs });
        restartTimer = setTimeout(start, backoffMs);
        backoffMs = Math.min(backoffMs * 2, RESTART_MAX_MS);
      });
    };

    const handlers = new Map<NodeJS.Signals, () => void>();
    for (const sig of FORWARDED) {
      const h = () => {
        if (STOPPING.has(sig) && !stopping) {
          stopping = sig;
          if (restartTimer) {
            // Nothing is running: we are done.
            clearTimeout(restartTimer);
            cleanup();
            resolve(0);
            return;
          }
          setTimeout(() => child?.kill("SIGKILL"), STOP_DEADLINE_MS).unref();
        }
        child?.kill(sig);
      };
      handlers.set(sig, h);
      process.on(sig, h);
    }
    process.on("SIGCHLD", reap);
    const interval = setInterval(reap, REAP_INTERVAL_MS);
    interval.unref();
    const cleanup = () => {
      clearInterval(interval);
      process.off("SIGCHLD", reap);
      for (const [sig, h] of handlers) process.off(sig, h);
    };
    start();
  });
}
