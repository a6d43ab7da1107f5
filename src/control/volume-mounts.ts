/**
 * NFS volume mounts from /init (docs/protocol.md §6.4), as E2B envd does them: for each path not already
 * mounted for this lifecycleID, unmount what is stale there (`umount --force`, then `--lazy`),
 * `mkdir -p`, and `mount -v -t nfs -o <NFS_OPTIONS> <target> <path>`.
 *
 * All mounts of one /init share a 10 s budget; a mount still running at the deadline is killed and
 * the /init fails. A path whose mount is still in flight (an NFS mount stuck in the kernel cannot
 * be killed) is skipped by later calls instead of being attempted twice.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { VolumeMount } from "./init-request.ts";

export const NFS_OPTIONS =
  "fg,hard,sync,rsize=1048576,wsize=1048576,mountproto=tcp,mountport=2049,proto=tcp,port=2049,nfsvers=3,noacl,noac,lookupcache=none";
export const MOUNT_BUDGET_MS = 10_000;
const MAX_OUTPUT_CHARS = 2_048;

export interface CommandResult {
  code: number | null;
  /** stdout and stderr together, trimmed and cut to a few KiB. */
  output: string;
}

export type CommandRunner = (argv: [string, ...string[]], signal: AbortSignal) => Promise<CommandResult>;

export function mountArgv(m: VolumeMount): [string, ...string[]] {
  return ["mount", "-v", "-t", "nfs", "-o", NFS_OPTIONS, m.nfsTarget, m.path];
}

export interface VolumeMounterDeps {
  run?: CommandRunner;
  isMountPoint?: (path: string) => boolean;
  mkdirp?: (path: string) => void;
  log: Logger;
  budgetMs?: number;
}

export class VolumeMounter {
  readonly #run: CommandRunner;
  readonly #isMountPoint: (path: string) => boolean;
  readonly #mkdirp: (path: string) => void;
  readonly #log: Logger;
  readonly #budgetMs: number;
  /** path → what is mounted there, by us, for which lifecycle. */
  readonly #mounted = new Map<string, { target: string; lifecycleID: string | undefined }>();
  readonly #inFlight = new Set<string>();

  constructor(deps: VolumeMounterDeps) {
    this.#run = deps.run ?? runCommand;
    this.#isMountPoint = deps.isMountPoint ?? isMountPoint;
    this.#mkdirp = deps.mkdirp ?? ((p) => mkdirSync(p, { recursive: true }));
    this.#log = deps.log;
    this.#budgetMs = deps.budgetMs ?? MOUNT_BUDGET_MS;
  }

  /** Mounts what is not mounted yet for `lifecycleID`. Throws FailedPrecondition on the first failure. */
  async mountAll(mounts: readonly VolumeMount[], lifecycleID: string | undefined, signal?: AbortSignal): Promise<void> {
    const budget = AbortSignal.timeout(this.#budgetMs);
    const stop = signal ? AbortSignal.any([budget, signal]) : budget;
    for (const m of mounts) {
      const have = this.#mounted.get(m.path);
      if (have && have.target === m.nfsTarget && have.lifecycleID === lifecycleID) continue;
      if (this.#inFlight.has(m.path)) {
        this.#log.warn("volume mount still in progress, skipped", { path: m.path });
        continue;
      }
      this.#inFlight.add(m.path);
      const attempt = this.#mountOne(m, stop);
      // The path stays busy until the attempt really ends, even after the budget gave up on it.
      void attempt.then(
        () => this.#inFlight.delete(m.path),
        () => this.#inFlight.delete(m.path),
      );
      const result = await Promise.race([attempt, aborted(stop)]);
      if (result === "aborted") {
        throw new EnvdError(
          Code.FailedPrecondition,
          budget.aborted
            ? `mounting ${m.nfsTarget} on ${m.path} did not finish within ${this.#budgetMs / 1000} s`
            : `mounting ${m.nfsTarget} on ${m.path} was cancelled`,
        );
      }
      this.#mounted.set(m.path, { target: m.nfsTarget, lifecycleID });
      this.#log.info("volume mounted", { path: m.path, target: m.nfsTarget, lifecycleID });
    }
  }

  async #mountOne(m: VolumeMount, signal: AbortSignal): Promise<void> {
    this.#mounted.delete(m.path);
    if (this.#isMountPoint(m.path)) {
      const forced = await this.#run(["umount", "--force", m.path], signal);
      if (forced.code !== 0) {
        const lazy = await this.#run(["umount", "--lazy", m.path], signal);
        if (lazy.code !== 0) this.#log.warn("stale mount could not be removed", { path: m.path, output: lazy.output });
      }
    }
    try {
      this.#mkdirp(m.path);
    } catch (err) {
      throw new EnvdError(Code.FailedPrecondition, `cannot create mount point ${m.path}: ${(err as Error).message}`);
    }
    const r = await this.#run(mountArgv(m), signal);
    if (r.code !== 0) {
      throw new EnvdError(Code.FailedPrecondition, `mount ${m.nfsTarget} on ${m.path} failed: ${r.output || `exit ${r.code}`}`);
    }
  }
}

function aborted(signal: AbortSignal): Promise<"aborted"> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve("aborted");
    else signal.addEventListener("abort", () => resolve("aborted"), { once: true });
  });
}

/** Runs a command found on PATH; SIGKILLs it when `signal` fires. Never rejects. */
export function runCommand(argv: [string, ...string[]], signal: AbortSignal): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [file, ...args] = argv;
    let output = "";
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], signal, killSignal: "SIGKILL" });
    const collect = (d: Buffer) => {
      if (output.length < MAX_OUTPUT_CHARS) output += d.toString();
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    child.once("error", (err) => {
      if ((err as NodeJS.ErrnoException).code === "ABORT_ERR") return; // the close event follows
      resolve({ code: null, output: err.message });
    });
    child.once("close", (code) => resolve({ code, output: output.trim().slice(0, MAX_OUTPUT_CHARS) }));
  });
}

/** Whether `path` is a mount point, from /proc/self/mountinfo (octal escapes decoded). */
export function isMountPoint(path: string): boolean {
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return false;
  }
  for (const line of text.split("\n")) {
    const field = line.split(" ")[4];
    if (field && field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))) === path) {
      return true;
    }
  }
  return false;
}
