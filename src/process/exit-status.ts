/**
 * How a process ended, in the words Go's os.ProcessState uses: E2B clients show these strings
 * (`exit status 2`, `signal: killed`) and the SDK raises CommandExitError with them.
 */
import { constants } from "node:os";

export interface ExitStatus {
  /** Exit status, or -1 when a signal ended the process. */
  exitCode: number;
  /** True when the process exited normally (not by a signal). */
  exited: boolean;
  status: string;
  /** Same text as `status` whenever the exit was non-zero or by a signal. */
  error: string | undefined;
}

const GO_SIGNAL_TEXT: Record<string, string> = {
  SIGHUP: "hangup",
  SIGINT: "interrupt",
  SIGQUIT: "quit",
  SIGILL: "illegal instruction",
  SIGTRAP: "trace/breakpoint trap",
  SIGABRT: "aborted",
  SIGBUS: "bus error",
  SIGFPE: "floating point exception",
  SIGKILL: "killed",
  SIGUSR1: "user defined signal 1",
  SIGSEGV: "segmentation fault",
  SIGUSR2: "user defined signal 2",
  SIGPIPE: "broken pipe",
  SIGALRM: "alarm clock",
  SIGTERM: "terminated",
  SIGCHLD: "child exited",
  SIGCONT: "continued",
  SIGSTOP: "stopped (signal)",
  SIGTSTP: "stopped",
  SIGXCPU: "CPU time limit exceeded",
  SIGXFSZ: "file size limit exceeded",
  SIGVTALRM: "virtual timer expired",
  SIGPROF: "profiling timer expired",
  SIGWINCH: "window changed",
  SIGIO: "I/O possible",
  SIGPWR: "power failure",
  SIGSYS: "bad system call",
};

/** Builds the end status from what waitpid reported: an exit code, or a signal (name or number). */
export function exitStatusOf(code: number | null, signal: NodeJS.Signals | number | null): ExitStatus {
  if (signal !== null && signal !== 0) {
    const name = typeof signal === "number" ? signalName(signal) : signal;
    const text = `signal: ${GO_SIGNAL_TEXT[name] ?? name}`;
    return { exitCode: -1, exited: false, status: text, error: text };
  }
  const exitCode = code ?? -1;
  const status = `exit status ${exitCode}`;
  return { exitCode, exited: true, status, error: exitCode === 0 ? undefined : status };
}

function signalName(num: number): string {
  for (const [name, n] of Object.entries(constants.signals)) if (n === num) return name;
  return `signal ${num}`;
}

const SIGNAL_BY_TEXT = new Map(Object.entries(GO_SIGNAL_TEXT).map(([name, text]) => [`signal: ${text}`, name]));

/** The signal that ended a process, by name (undefined when it exited on its own). */
export function signalNameOf(s: ExitStatus): string | undefined {
  if (s.exited) return undefined;
  return SIGNAL_BY_TEXT.get(s.status) ?? (s.status.startsWith("signal: ") ? s.status.slice(8) : undefined);
}
