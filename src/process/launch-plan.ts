/**
 * Everything decided before a child is spawned, as pure data: the wrapper argv, the environment and
 * the working directory. Testable without spawning anything.
 *
 * The child is started through `/bin/sh -c <script> -- <cmd> <args…>` (as E2B envd does), so that,
 * before the user's program runs and without any race:
 *  - it moves itself into its cgroup (while still root);
 *  - its oom_score_adj goes back to 100 (the daemon protects itself, the workload dies first);
 *  - it drops to the user's uid, gid *and supplementary groups* with `setpriv` (libuv's uid/gid
 *    spawn options would drop the supplementary groups);
 *  - its nice and io priority return to normal.
 * argv reaches the program unchanged: the script only ever uses "$@".
 */
import type { User } from "../users/user-db.ts";

export interface SystemTools {
  setpriv: string | undefined;
  nice: string | undefined;
  ionice: string | undefined;
  /** The daemon's own nice value; children are brought back to 0. */
  daemonNice: number;
}

export interface LaunchRequest {
  cmd: string;
  args: readonly string[];
  user: User;
  cwd: string;
  /** Default environment (from /init and the daemon's internal variables). */
  defaultEnv: Record<string, string>;
  /** The request's own variables: they win over everything. */
  envs: Record<string, string>;
  /** `cgroup.procs` file to join before exec, if any. */
  cgroupProcs: string | undefined;
  /** PATH the daemon started with. */
  daemonPath: string;
}

export interface LaunchPlan {
  argv: [string, ...string[]];
  env: Record<string, string>;
  cwd: string;
  /** Set when setpriv is missing: spawn with these ids (supplementary groups are then lost). */
  uid: number | undefined;
  gid: number | undefined;
}

export const FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Child environment, last wins: PATH, HOME, USER, LOGNAME, SHELL; then defaults; then the request's. */
export function childEnv(req: Pick<LaunchRequest, "user" | "defaultEnv" | "envs" | "daemonPath">) {
  return {
    PATH: req.daemonPath || FALLBACK_PATH,
    HOME: req.user.home,
    USER: req.user.name,
    LOGNAME: req.user.name,
    SHELL: req.user.shell,
    ...req.defaultEnv,
    ...req.envs,
  };
}

export function planLaunch(req: LaunchRequest, tools: SystemTools): LaunchPlan {
  const steps: string[] = [];
  if (req.cgroupProcs) steps.push(`echo $$ > ${shellQuote(req.cgroupProcs)} 2>/dev/null`);
  steps.push("echo 100 > /proc/$$/oom_score_adj 2>/dev/null");
  const exec: string[] = ["exec"];
  // Priority first, while still root: bringing nice back to 0 from below needs CAP_SYS_NICE.
  if (tools.daemonNice !== 0 && tools.nice) exec.push(shellQuote(tools.nice), "-n", String(-tools.daemonNice));
  // -t: run the command even where the I/O scheduler refuses the class.
  if (tools.ionice) exec.push(shellQuote(tools.ionice), "-t", "-c", "2", "-n", "4");
  const dropInShell = tools.setpriv !== undefined && (req.user.uid !== 0 || req.user.gid !== 0 || req.user.groups.length > 0);
  if (dropInShell) {
    const groups = req.user.groups.length > 0 ? req.user.groups.join(",") : "";
    exec.push(
      shellQuote(tools.setpriv as string),
      `--reuid=${req.user.uid}`,
      `--regid=${req.user.gid}`,
      groups ? `--groups=${groups}` : "--clear-groups",
      "--",
    );
  }
  exec.push('"$@"');
  steps.push(exec.join(" "));
  const needsSpawnIds = !dropInShell && (req.user.uid !== 0 || req.user.gid !== 0);
  return {
    argv: ["/bin/sh", "-c", steps.join("\n"), "--", req.cmd, ...req.args],
    env: childEnv(req),
    cwd: req.cwd,
    uid: needsSpawnIds ? req.user.uid : undefined,
    gid: needsSpawnIds ? req.user.gid : undefined,
  };
}

export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
