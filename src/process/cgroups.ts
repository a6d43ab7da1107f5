/**
 * cgroup v2 groups for the workload (docs/protocol.md §7.3): `ptys` (PTY children), `user` (pipe
 * children) and `socats` (port forwarders), created under `-cgroup-root` with their limits, and
 * freeze/thaw of the workload before a snapshot (§4.6).
 *
 * Children join their group before they exec: the launch wrapper writes `$$` into the group's
 * `cgroup.procs` (see launch-plan.ts), so no user code ever runs outside it. Where the root is not
 * cgroup v2 (or with `-no-cgroups`) a no-op manager is used and processes stay where the daemon is.
 * Controllers the root does not offer are skipped: their settings are simply not written.
 *
 * While the workload is frozen nothing may be started into it (a child would freeze before its
 * first instruction): the placer then refuses with Unavailable.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type CgroupKind, GROUP_DIRS, groupSettings, memTotalFromMeminfo, readSelfCgroupDir, workloadMemoryBytes } from "./cgroup-layout.ts";

const CONTROLLERS = ["cpu", "io", "memory"] as const;

export interface FreezeOptions {
  mode: "legacy" | "hierarchy";
  /** Wait up to this long for the kernel to report every group frozen; ≤ 0: do not wait. */
  maxWaitMs: number;
  /** hierarchy mode: visit at most this many cgroups. */
  maxCgroups: number;
  signal?: AbortSignal;
}

/** What a freeze did, in the shape of E2B envd's FreezeResult. */
export interface FreezeResult {
  mode: "legacy" | "hierarchy";
  visited: number;
  allowlisted: number;
  truncated: boolean;
  preFrozen: number;
  requested: number;
  frozen: number;
  notFrozen: number;
  failed: number;
  unobservable: number;
  sweepMs: number;
  waitMs: number;
}

export interface Cgroups {
  /** True when groups exist and children are placed in them. */
  readonly enabled: boolean;
  readonly root: string | undefined;
  /** True between a freeze and the next thaw. */
  readonly frozen: boolean;
  /** The `cgroup.procs` file a new child of this kind joins; undefined without cgroups. Throws Unavailable while frozen. */
  procsPath(kind: CgroupKind): string | undefined;
  /** Directory of a group (tests, diagnostics). */
  groupDir(kind: CgroupKind): string | undefined;
  freeze(options: FreezeOptions): Promise<FreezeResult>;
  /** Thaws everything the last freeze froze (and the legacy groups). Idempotent. */
  thaw(): { thawed: number; failed: number };
}

export interface CgroupsOptions {
  root: string;
  disabled: boolean;
  log: Logger;
  /** Defaults to MemTotal from /proc/meminfo. */
  memTotalBytes?: number;
  /** The daemon's own cgroup directory (hierarchy freeze never touches it or its ancestors). */
  selfDir?: string;
}

/**
 * Sets up the groups, or returns the no-op manager when cgroup v2 is not usable at `root`. All the
 * work (enabling controllers, creating the groups, writing their limits, clearing a stale freeze)
 * is done here, synchronously, before the daemon listens: about twenty small reads and writes in
 * cgroupfs, 0.1–0.2 ms in a row where awaiting each one took 1.1 ms of the start until /health
 * (docs/benchmarks.md). The managers' constructors only store.
 */
export function createCgroups(opts: CgroupsOptions): Cgroups {
  const { log } = opts;
  if (opts.disabled) {
    log.info("cgroups disabled (-no-cgroups)");
    return new NoopCgroups();
  }
  if (!existsSync(join(opts.root, "cgroup.controllers"))) {
    log.info("cgroup v2 not available; children stay in the daemon's cgroup", { root: opts.root });
    return new NoopCgroups();
  }
  try {
    return CgroupV2.create(opts);
  } catch (err) {
    log.warn("cgroup setup failed; children stay in the daemon's cgroup", { root: opts.root, err: String(err) });
    return new NoopCgroups();
  }
}

class NoopCgroups implements Cgroups {
  readonly enabled = false;
  readonly root = undefined;
  #frozen = false;
  get frozen(): boolean {
    return this.#frozen;
  }
  procsPath(): undefined {
    return undefined;
  }
  groupDir(): undefined {
    return undefined;
  }
  async freeze(options: FreezeOptions): Promise<FreezeResult> {
    this.#frozen = true;
    return emptyResult(options.mode);
  }
  thaw() {
    this.#frozen = false;
    return { thawed: 0, failed: 0 };
  }
}

function emptyResult(mode: FreezeOptions["mode"]): FreezeResult {
  return {
    mode,
    visited: 0,
    allowlisted: 0,
    truncated: false,
    preFrozen: 0,
    requested: 0,
    frozen: 0,
    notFrozen: 0,
    failed: 0,
    unobservable: 0,
    sweepMs: 0,
    waitMs: 0,
  };
}

const FREEZE_POLL_MS = 2;

class CgroupV2 implements Cgroups {
  readonly enabled = true;
  readonly root: string;
  readonly #log: Logger;
  readonly #selfDir: string | undefined;
  /** Groups the last freeze wrote "1" to. */
  #frozenDirs: string[] = [];
  #frozen = false;

  private constructor(root: string, log: Logger, selfDir: string | undefined) {
    this.root = root;
    this.#log = log;
    this.#selfDir = selfDir;
  }

  /** Enables the controllers the root offers, creates the groups and applies their settings. */
  static create(opts: CgroupsOptions): CgroupV2 {
    const cg = new CgroupV2(opts.root, opts.log, opts.selfDir ?? readSelfCgroupDir());
    const log = opts.log;
    const root = opts.root;
    const available = new Set(readFileSync(join(root, "cgroup.controllers"), "utf8").trim().split(/\s+/).filter(Boolean));
    const enabled: string[] = [];
    for (const c of CONTROLLERS) {
      if (!available.has(c)) continue;
      try {
        writeFileSync(join(root, "cgroup.subtree_control"), `+${c}`);
        enabled.push(c);
      } catch (err) {
        log.warn("cannot enable cgroup controller", { controller: c, err: String(err) });
      }
    }
    const memTotal = opts.memTotalBytes ?? memTotalFromMeminfo(readFileSync("/proc/meminfo", "utf8"));
    const settings = groupSettings(memTotal);
    const skipped = new Set<string>();
    for (const kind of Object.keys(GROUP_DIRS) as CgroupKind[]) {
      const dir = join(root, GROUP_DIRS[kind]);
      mkdirSync(dir, { recursive: true });
      for (const [file, value] of settings[kind]) {
        // A controller that is not enabled has no files (writing one fails with EACCES): skip it.
        if (!existsSync(join(dir, file))) {
          skipped.add(file.split(".")[0] as string);
          continue;
        }
        try {
          writeFileSync(join(dir, file), value);
        } catch (err) {
          log.warn("cannot apply cgroup setting", { group: GROUP_DIRS[kind], file, value, err: String(err) });
        }
      }
      // A group left frozen by an earlier daemon (crash during a pause) must not swallow new children.
      try {
        writeFileSync(join(dir, "cgroup.freeze"), "0");
      } catch {
        // no freezer (kernel < 5.2)
      }
    }
    log.info("cgroups ready", {
      root,
      controllers: enabled,
      skipped: [...skipped],
      workloadMemoryBytes: workloadMemoryBytes(memTotal),
    });
    return cg;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  groupDir(kind: CgroupKind): string {
    return join(this.root, GROUP_DIRS[kind]);
  }

  procsPath(kind: CgroupKind): string {
    if (this.#frozen) throw new EnvdError(Code.Unavailable, "the sandbox is frozen for a snapshot; try again after it resumes");
    return join(this.groupDir(kind), "cgroup.procs");
  }

  async freeze(options: FreezeOptions): Promise<FreezeResult> {
    const result = emptyResult(options.mode);
    const sweepStart = performance.now();
    const targets =
      options.mode === "legacy" ? [this.groupDir("user"), this.groupDir("pty")] : this.#hierarchyTargets(options.maxCgroups, result);
    if (options.mode === "legacy") result.visited = targets.length;
    this.#frozen = true;
    const requested: string[] = [];
    for (const dir of targets) {
      if (readFrozen(dir) === true) result.preFrozen++;
      try {
        writeFileSync(join(dir, "cgroup.freeze"), "1");
        requested.push(dir);
      } catch (err) {
        result.failed++;
        this.#log.warn("cannot freeze cgroup", { dir, err: String(err) });
      }
    }
    for (const dir of requested) if (!this.#frozenDirs.includes(dir)) this.#frozenDirs.push(dir);
    result.requested = requested.length;
    result.sweepMs = round(performance.now() - sweepStart);

    const waitStart = performance.now();
    let pending = requested;
    const deadline = waitStart + Math.max(0, options.maxWaitMs);
    for (;;) {
      const next: string[] = [];
      let unobservable = 0;
      for (const dir of pending) {
        const state = readFrozen(dir);
        if (state === undefined) unobservable++;
        else if (!state) next.push(dir);
      }
      result.unobservable = unobservable;
      pending = next;
      if (pending.length === 0 || performance.now() >= deadline || options.signal?.aborted) break;
      await new Promise((r) => setTimeout(r, FREEZE_POLL_MS));
    }
    result.waitMs = options.maxWaitMs > 0 ? round(performance.now() - waitStart) : 0;
    result.notFrozen = pending.length;
    result.frozen = requested.length - pending.length - result.unobservable;
    return result;
  }

  thaw(): { thawed: number; failed: number } {
    let thawed = 0;
    let failed = 0;
    const dirs = new Set([...this.#frozenDirs, this.groupDir("user"), this.groupDir("pty")]);
    for (const dir of dirs) {
      try {
        writeFileSync(join(dir, "cgroup.freeze"), "0");
        thawed++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // the group went away
        failed++;
        this.#log.warn("cannot thaw cgroup", { dir, err: String(err) });
      }
    }
    this.#frozenDirs = [];
    this.#frozen = false;
    return { thawed, failed };
  }

  /**
   * Every top-most cgroup under the root that does not hold the daemon: the daemon's ancestors are
   * walked into, never frozen; the forwarders' group is left alone (allowlisted).
   */
  #hierarchyTargets(maxCgroups: number, result: FreezeResult): string[] {
    const targets: string[] = [];
    const socats = this.groupDir("socat");
    const queue = [this.root];
    while (queue.length > 0) {
      const dir = queue.shift() as string;
      let names: string[];
      try {
        names = readdirSync(dir, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => d.name);
      } catch {
        continue;
      }
      for (const name of names) {
        if (result.visited >= maxCgroups) {
          result.truncated = true;
          return targets;
        }
        const child = join(dir, name);
        result.visited++;
        if (child === socats) result.allowlisted++;
        else if (this.#selfDir !== undefined && (this.#selfDir === child || this.#selfDir.startsWith(`${child}/`))) {
          result.allowlisted++;
          queue.push(child);
        } else targets.push(child);
      }
    }
    return targets;
  }
}

/** The kernel's view (`frozen` in cgroup.events); undefined when it cannot be read. */
function readFrozen(dir: string): boolean | undefined {
  try {
    const m = /^frozen (\d)$/m.exec(readFileSync(join(dir, "cgroup.events"), "utf8"));
    return m ? m[1] === "1" : undefined;
  } catch {
    return undefined;
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
