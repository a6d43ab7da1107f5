/**
 * Turns a start request into a running, tracked process: resolves the user, the working
 * directory, the executable and the environment, then hands a LaunchPlan to the ProcessTable.
 * Every mistake in the request is an InvalidArgument raised here, before anything is spawned.
 */
import { execFile } from "node:child_process";
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import { getPriority } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import { resolvePath } from "../fs/paths.ts";
import type { Logger } from "../log.ts";
import type { User } from "../users/user-db.ts";
import type { Session } from "../session.ts";
import { childEnv, planLaunch, type SystemTools } from "./launch-plan.ts";
import { spawnTurn } from "./spawn-turns.ts";
import type { OutputLogSink } from "./output-log.ts";
import type { ProcessHandle } from "./process-handle.ts";
import { ProcessTable } from "./process-table.ts";

export interface StartRequest {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd: string | undefined;
  user: User;
  tag: string | undefined;
  pty: { cols: number; rows: number } | undefined;
  stdin: boolean;
  timeoutMs: number | undefined;
}

/** Where a child goes in the cgroup tree: a `cgroup.procs` path, or undefined. */
export type CgroupPlacer = (kind: "pty" | "user") => string | undefined;

export class ProcessManager implements AsyncDisposable {
  readonly table: ProcessTable;
  readonly #session: Session;
  readonly #daemonPath: string;
  readonly #cgroupOf: CgroupPlacer;
  #tools: SystemTools;
  /** Cuts the ionice check short at disposal (detectTools). */
  readonly #probe = new AbortController();
  /** `ionice` found by detectTools, checked on the first start (#ioniceCheck). */
  #ionice: string | undefined;
  #ioniceChecked: Promise<void> | undefined;

  readonly #outputLog: OutputLogSink | undefined;

  constructor(opts: { session: Session; log: Logger; daemonPath: string; cgroupOf?: CgroupPlacer; outputLog?: OutputLogSink | undefined }) {
    this.#outputLog = opts.outputLog;
    this.#session = opts.session;
    this.#daemonPath = opts.daemonPath;
    this.#cgroupOf = opts.cgroupOf ?? (() => undefined);
    this.table = new ProcessTable(opts.log.child({ component: "process" }));
    this.#tools = { setpriv: undefined, nice: undefined, ionice: undefined, daemonNice: 0 };
  }

  /**
   * Looks for the tools the launch wrapper uses (setpriv, nice, ionice) and the daemon's own
   * priorities. Call once before the first start. The daemon's I/O priority is checked (an
   * `ionice` exec) on the first start, which waits for it, not at daemon start: spawning at start
   * cost 1.5–5 ms of the start until /health and the child_process machinery's memory in every
   * VM that never runs a command.
   */
  detectTools(): void {
    const find = (name: string) => findExecutable(name, this.#daemonPath);
    this.#tools = { setpriv: find("setpriv"), nice: find("nice"), ionice: undefined, daemonNice: safePriority() };
    this.#ionice = find("ionice");
  }

  /**
   * Children inherit the daemon's I/O priority. Reset it with ionice only when the daemon's own
   * differs from the default (class none, or best-effort 4): an extra exec costs ~3 ms a start.
   * Settles (never rejects) once decided, failed or cut short by disposal.
   */
  #ioniceCheck(): Promise<void> {
    const ionice = this.#ionice;
    const { signal } = this.#probe;
    if (!ionice || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      execFile(ionice, ["-p", String(process.pid)], { timeout: 5_000, signal }, (err, stdout) => {
        if (err || signal.aborted || /^(none: prio \d+|best-effort: prio 4)\s*$/.test(stdout)) return resolve();
        execFile(ionice, ["-t", "-c", "2", "-n", "4", "true"], { timeout: 5_000, signal }, (err2) => {
          if (!err2) this.#tools = { ...this.#tools, ionice };
          resolve();
        });
      });
    });
  }

  async start(req: StartRequest): Promise<ProcessHandle> {
    if (!req.cmd) throw new EnvdError(Code.InvalidArgument, "process.cmd is required");
    const cwd = resolvePath(req.cwd ?? "", req.user.home, this.#session.defaultWorkdir);
    if (!isDirectory(cwd)) throw new EnvdError(Code.InvalidArgument, `cwd '${cwd}' does not exist`);
    const defaultEnv = this.#session.defaultEnv();
    const env = childEnv({ user: req.user, defaultEnv, envs: req.envs, daemonPath: this.#daemonPath });
    const exe = isAbsolute(req.cmd) || req.cmd.includes("/") ? resolveRelative(req.cmd, cwd) : findExecutable(req.cmd, env.PATH);
    if (!exe) throw new EnvdError(Code.InvalidArgument, `exec: "${req.cmd}": executable file not found in $PATH`);
    const cgroupProcs = this.#cgroupOf(req.pty ? "pty" : "user");
    this.#ioniceChecked ??= this.#ioniceCheck();
    await this.#ioniceChecked;
    const plan = planLaunch(
      {
        cmd: req.cmd,
        args: req.args,
        user: req.user,
        cwd,
        defaultEnv,
        envs: req.envs,
        cgroupProcs,
        daemonPath: this.#daemonPath,
      },
      this.#tools,
    );
    // One spawn per event-loop turn, so a start storm does not freeze the daemon (spawn-turns.ts).
    await spawnTurn();
    return this.table.start({
      plan,
      config: { cmd: req.cmd, args: req.args, envs: req.envs, cwd: req.cwd },
      tag: req.tag,
      pty: req.pty,
      stdin: req.stdin,
      timeoutMs: req.timeoutMs,
      cgroupDir: cgroupProcs === undefined ? undefined : dirname(cgroupProcs),
      outputLog: this.#outputLog,
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#probe.abort();
    await this.table.close();
  }
}

function safePriority(): number {
  try {
    return getPriority();
  } catch {
    return 0;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function resolveRelative(cmd: string, cwd: string): string | undefined {
  const path = isAbsolute(cmd) ? cmd : join(cwd, cmd);
  if (isExecutableFile(path)) return path;
  throw new EnvdError(Code.InvalidArgument, `exec: "${cmd}": no such executable file`);
}

/** First executable named `name` on a PATH string, like exec.LookPath. */
export function findExecutable(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}
