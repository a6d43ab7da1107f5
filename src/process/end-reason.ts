/**
 * Why a command ended, in words for the end event's `error` (issue 18.1). `status` and
 * `exit_code` stay exactly as Go envd sets them; only `error` gains the reason, so the SDK's
 * CommandExitError shows it.
 *
 * - OOM: the kernel's OOM killer counts every kill in the victim's cgroup (`memory.events`
 *   `oom_kill`, hierarchical) and system-wide (`/proc/vmstat` `oom_kill`). The count is read when
 *   the command starts and again when it dies by SIGKILL that envd did not send; a rise means the
 *   OOM killer. The counters are shared by every command in the same cgroup, so two commands
 *   killed in the same instant could both be named; a SIGKILL from elsewhere at the moment of an
 *   unrelated OOM kill is reported as OOM.
 * - Deadline: envd's own timer sent the SIGKILL.
 * - Outside: a signal envd did not send (not SendSignal, not the deadline, not shutdown) and not
 *   one a process raises against itself on a fault (SIGSEGV, SIGABRT…).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Signals a process gets from its own faults; an end by one of them needs no "from outside". */
const SELF_INFLICTED = new Set(["SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGXCPU", "SIGXFSZ", "SIGPIPE"]);

export interface OomProbe {
  /** OOM kills counted so far where this command lives. */
  readonly kills: number | undefined;
  /** Reads the count again. */
  read(): number | undefined;
  /** The memory limit that applies, in bytes (undefined: none). */
  limitBytes(): number | undefined;
}

/** Watches `cgroupDir`'s memory.events (or the system-wide count when there is no cgroup). */
export function oomProbe(cgroupDir: string | undefined): OomProbe {
  const read = (): number | undefined => {
    if (cgroupDir) {
      const fromCgroup = counter(join(cgroupDir, "memory.events"), "oom_kill");
      if (fromCgroup !== undefined) return fromCgroup;
    }
    return counter("/proc/vmstat", "oom_kill");
  };
  return {
    kills: read(),
    read,
    limitBytes: () => {
      if (!cgroupDir) return undefined;
      try {
        const raw = readFileSync(join(cgroupDir, "memory.max"), "utf8").trim();
        return raw === "max" ? undefined : Number(raw);
      } catch {
        return undefined;
      }
    },
  };
}

function counter(file: string, key: string): number | undefined {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, "m").exec(readFileSync(file, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface EndFacts {
  /** The signal that ended the process, by name (undefined: it exited). */
  signal: string | undefined;
  /** envd's deadline timer fired and sent SIGKILL. */
  timedOut: boolean;
  timeoutMs: number | undefined;
  /** Signals envd sent to this process (SendSignal, deadline, shutdown). */
  sentByEnvd: ReadonlySet<string>;
  oom: OomProbe | undefined;
}

/** The reason in words, or undefined when the plain status says it all. */
export function endReason(f: EndFacts): string | undefined {
  if (f.signal === undefined) return undefined;
  if (f.timedOut && f.signal === "SIGKILL") return `killed after its ${seconds(f.timeoutMs ?? 0)} timeout`;
  if (f.sentByEnvd.has(f.signal)) return undefined;
  if (f.signal === "SIGKILL" && f.oom && f.oom.kills !== undefined) {
    const now = f.oom.read();
    if (now !== undefined && now > f.oom.kills) {
      const limit = f.oom.limitBytes();
      return limit === undefined
        ? "killed by the OOM killer: the sandbox ran out of memory"
        : `killed by the OOM killer: memory limit ${mebibytes(limit)} reached`;
    }
  }
  if (SELF_INFLICTED.has(f.signal)) return undefined;
  return `killed by signal ${f.signal} from outside`;
}

function seconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

function mebibytes(bytes: number): string {
  const mib = bytes / 2 ** 20;
  return `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB`;
}
