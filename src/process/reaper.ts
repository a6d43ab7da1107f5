/**
 * Reaps zombie children the runtime does not know about: orphans the kernel re-parented to this
 * process because it is PID 1 or a child subreaper.
 *
 * Node and Bun only ever wait for the pids they spawned (libuv calls waitpid(pid) per child), so a
 * re-parented orphan stays a zombie forever unless something calls waitpid on it. Reaping one of
 * the runtime's own children would steal its exit status (libuv then never reports the exit), so
 * the reaper takes a predicate `isOwn(pid)` and never touches a pid it accepts. The reaping process
 * (`reaper-init.ts`) has exactly one child of its own, the daemon, which makes the predicate exact.
 *
 * Fast path: waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT) peeks at one waitable child without
 * reaping it. If it is an orphan, waitpid(pid) reaps it; if it is our own child (the runtime will
 * collect it), the slower /proc scan finds the other zombies behind it.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { Logger } from "../log.ts";
import { type Libc, P_ALL, WEXITED, WNOHANG, WNOWAIT } from "../sys/libc.ts";

export interface ProcStat {
  pid: number;
  comm: string;
  /** One letter: R, S, D, Z, T, … */
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
}

/** Parses `/proc/<pid>/stat`. The command name may hold spaces and parentheses: it ends at the last ')'. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 2).split(" ");
  const [state, ppid, pgrp, session] = [rest[0], Number(rest[1]), Number(rest[2]), Number(rest[3])];
  if (!Number.isInteger(pid) || !state || !Number.isInteger(ppid)) return undefined;
  return { pid, comm: text.slice(open + 1, close), state, ppid, pgrp, session };
}

/** Every process whose parent is `parent`, read from /proc (missing ones are skipped). */
export function childrenOf(parent: number, procRoot = "/proc"): ProcStat[] {
  const out: ProcStat[] = [];
  let names: string[];
  try {
    names = readdirSync(procRoot);
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    let text: string;
    try {
      text = readFileSync(`${procRoot}/${name}/stat`, "latin1");
    } catch {
      continue;
    }
    const stat = parseProcStat(text);
    if (stat && stat.ppid === parent) out.push(stat);
  }
  return out;
}

/** siginfo_t.si_pid on 64-bit Linux: si_signo, si_errno, si_code, then the 8-byte-aligned union. */
const SI_PID_OFFSET = 16;

export class OrphanReaper {
  readonly #libc: Libc;
  readonly #isOwn: (pid: number) => boolean;
  readonly #log: Logger;
  readonly #siginfo = new Uint8Array(128);
  readonly #status = new Uint8Array(4);
  /** Orphans reaped so far. */
  reaped = 0;

  constructor(opts: { libc: Libc; isOwn: (pid: number) => boolean; log: Logger }) {
    this.#libc = opts.libc;
    this.#isOwn = opts.isOwn;
    this.#log = opts.log;
  }

  /** Reaps every waitable orphan now; returns how many. Never blocks. */
  reapOnce(): number {
    let n = 0;
    for (let i = 0; i < 4096; i++) {
      const pid = this.#peek();
      if (pid <= 0) break;
      if (this.#isOwn(pid)) {
        n += this.#reapByScan();
        break;
      }
      if (!this.#reap(pid)) break;
      n++;
    }
    return n;
  }

  /** The pid of one waitable child (not reaped), 0 when none, -1 when there are no children. */
  #peek(): number {
    this.#siginfo.fill(0);
    const rc = this.#libc.waitid(P_ALL, 0, this.#siginfo, WEXITED | WNOHANG | WNOWAIT);
    if (rc !== 0) return -1;
    return new DataView(this.#siginfo.buffer).getInt32(SI_PID_OFFSET, true);
  }

  #reap(pid: number): boolean {
    const rc = this.#libc.waitpid(pid, this.#status, WNOHANG);
    if (rc === pid) {
      this.reaped++;
      this.#log.debug("reaped orphan", { pid });
      return true;
    }
    return false;
  }

  #reapByScan(): number {
    let n = 0;
    for (const child of childrenOf(process.pid)) {
      if (child.state === "Z" && !this.#isOwn(child.pid) && this.#reap(child.pid)) n++;
    }
    return n;
  }
}
