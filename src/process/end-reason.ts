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
 *   unrelated OOM kill is reported as OOM. Also OOM: a SIGKILL envd did not send while the
 *   command's cgroup is at its limit (`memory.current` ≥ `memory.max`, read when the end is
 *   handled), for kills the counter does not show. Memory the victim held is usually freed by then,
 *   so this catches the kills where the cgroup is still full (other members hold it).
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
  /** The cgroup's memory use is at its limit now (`memory.current` ≥ `memory.max`). */
  atLimit(): boolean;
}

/**
 * Watches `cgroupDir`'s memory.events (or the system-wide count when there is no cgroup).
 * `vmstat` is that system-wide file (a seam for tests).
 */
export function oomProbe(cgroupDir: string | undefined, vmstat = "/proc/vmstat"): OomProbe {
  const read = (): number | undefined => {
    if (cgroupDir) {
      const fromCgroup = counter(join(cgroupDir, "memory.events"), "oom_kill");
      if (fromCgroup !== undefined) return fromCgroup;
    }
    return counter(vmstat, "oom_kill");
  };
  const limitBytes = (): number | undefined => (cgroupDir ? bytesIn(join(cgroupDir, "memory.max")) : undefined);
  return {
    kills: read(),
    read,
    limitBytes,
    atLimit: () => {
      if (!cgroupDir) return false;
      const limit = limitBytes();
      const current = bytesIn(join(cgroupDir, "memory.current"));
      return limit !== undefined && current !== undefined && current >= limit;
    },
  };
}

/** A cgroup file holding one byte count; undefined for `max`, a missing file or anything else. */
function bytesIn(file: string): number | undefined {
  try {
    const raw = readFileSync(file, "utf8").trim();
    return /^\d+$/.test(raw) ? Number(raw) : undefined;
  } catch {
    return undefined;
  }
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
  if (f.signal === "SIGKILL" && f.oom) {
    const now = f.oom.kills === undefined ? undefined : f.oom.read();
    const counted = now !== undefined && f.oom.kills !== undefined && now > f.oom.kills;
    if (counted || f.oom.atLimit()) {
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
