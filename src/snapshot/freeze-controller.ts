/**
 * E2B's pause hooks (docs/protocol.md §4.6): `/freeze` and `/unfreeze` freeze and thaw the workload's
 * cgroups, `/fsfreeze` and `/fsthaw` freeze and thaw the root filesystem (FIFREEZE / FITHAW).
 *
 * /freeze also prepares the daemon for the snapshot (SnapshotLifecycle.prepare: loops stopped,
 * filesystems synced before the workload stops, idle connections closed). The thaw runs on every
 * successful /init (the resume), on /unfreeze (the pause was rolled back, no restore steps), or
 * after 10 minutes if nobody thawed (a host that died between freeze and pause must not leave the
 * sandbox frozen forever).
 *
 * One operation at a time: a second caller gets Unavailable (503) instead of queuing behind a
 * freeze that may wait for the kernel.
 */
import { execFile } from "node:child_process";
import { closeSync, constants as fsConstants, openSync } from "node:fs";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Cgroups, FreezeOptions, FreezeResult } from "../process/cgroups.ts";
import type { Libc } from "../sys/libc.ts";
import type { SnapshotLifecycle } from "./snapshot-lifecycle.ts";

/** _IOWR('X', 119, int) and _IOWR('X', 120, int). */
export const FIFREEZE = 0xc004_5877;
export const FITHAW = 0xc004_5878;
export const FREEZE_WATCHDOG_MS = 10 * 60_000;
const EBUSY = 16;
const EINVAL = 22;

export interface FreezeControllerDeps {
  log: Logger;
  cgroups: Cgroups;
  lifecycle: SnapshotLifecycle;
  libc: Libc | undefined;
  /** Mount point FIFREEZE acts on; undefined refuses /fsfreeze (outside a VM, see daemon.ts). */
  fsFreezePath: string | undefined;
  /** PATH for the `fsfreeze` program used when there is no FFI. */
  path: string;
  watchdogMs?: number;
}

export class FreezeController {
  readonly #deps: FreezeControllerDeps;
  #busy = false;
  #watchdog: NodeJS.Timeout | undefined;
  #fsFrozen = false;

  constructor(deps: FreezeControllerDeps) {
    this.#deps = deps;
  }

  get frozen(): boolean {
    return this.#deps.cgroups.frozen;
  }

  get fsFrozen(): boolean {
    return this.#fsFrozen;
  }

  async freeze(options: FreezeOptions): Promise<FreezeResult> {
    return this.#exclusive(async () => {
      await this.#deps.lifecycle.prepare("freeze");
      const result = await this.#deps.cgroups.freeze(options);
      this.#armWatchdog();
      this.#deps.log.info("workload frozen", { ...result });
      return result;
    });
  }

  /** Rollback: thaw and resume without the restore steps. */
  async unfreeze(): Promise<void> {
    return this.#exclusive(async () => {
      this.#thaw("unfreeze");
      await this.#deps.lifecycle.resume();
    });
  }

  /** The thaw every successful /init runs (E2B: the resume path). Never refused: it must not be lost. */
  thawForInit(): void {
    if (!this.#deps.cgroups.frozen) return;
    try {
      this.#thaw("init");
    } catch {
      // logged; /init itself must still succeed
    }
  }

  async fsFreeze(): Promise<void> {
    return this.#exclusive(async () => {
      await this.#fsIoctl("freeze");
      this.#fsFrozen = true;
    });
  }

  async fsThaw(): Promise<void> {
    return this.#exclusive(async () => {
      await this.#fsIoctl("thaw");
      this.#fsFrozen = false;
    });
  }

  [Symbol.dispose](): void {
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
  }

  #thaw(reason: string): void {
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    const r = this.#deps.cgroups.thaw();
    this.#deps.log.info("workload thawed", { reason, ...r });
    if (r.failed > 0) throw new EnvdError(Code.Internal, `could not thaw ${r.failed} cgroup(s)`);
  }

  #armWatchdog(): void {
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => {
      this.#watchdog = undefined;
      this.#deps.log.warn("nobody thawed the workload: thawing", { afterMs: this.#deps.watchdogMs ?? FREEZE_WATCHDOG_MS });
      try {
        this.#thaw("watchdog");
      } catch {
        // logged by the cgroup manager
      }
      void this.#deps.lifecycle.resume();
    }, this.#deps.watchdogMs ?? FREEZE_WATCHDOG_MS);
    this.#watchdog.unref();
  }

  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#busy) throw new EnvdError(Code.Unavailable, "another freeze or thaw is in progress");
    this.#busy = true;
    try {
      return await fn();
    } finally {
      this.#busy = false;
    }
  }

  /** FIFREEZE/FITHAW on the mount point; "already frozen" and "not frozen" count as success. */
  async #fsIoctl(op: "freeze" | "thaw"): Promise<void> {
    const { fsFreezePath: path, libc, log } = this.#deps;
    if (path === undefined) {
      throw new EnvdError(Code.FailedPrecondition, "fsfreeze is only available inside a VM (not with -isnotfc)", { httpStatus: 409 });
    }
    if (!libc) {
      await runFsfreeze(op, path, this.#deps.path);
      log.info(op === "freeze" ? "filesystem frozen" : "filesystem thawed", { path, via: "fsfreeze" });
      return;
    }
    let fd: number;
    try {
      fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    } catch (err) {
      throw new EnvdError(Code.Internal, `cannot open ${path}: ${String(err)}`);
    }
    try {
      const rc = libc.ioctl(fd, op === "freeze" ? FIFREEZE : FITHAW, new Uint8Array(8));
      const errno = rc === 0 ? 0 : libc.errno();
      if (rc !== 0 && !(op === "freeze" && errno === EBUSY) && !(op === "thaw" && errno === EINVAL)) {
        throw new EnvdError(Code.Internal, `${op === "freeze" ? "FIFREEZE" : "FITHAW"} on ${path} failed (errno ${errno})`);
      }
      log.info(op === "freeze" ? "filesystem frozen" : "filesystem thawed", { path, already: rc !== 0 });
    } finally {
      closeSync(fd);
    }
  }
}

function runFsfreeze(op: "freeze" | "thaw", path: string, envPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("fsfreeze", [op === "freeze" ? "-f" : "-u", path], { env: { PATH: envPath }, timeout: 30_000 }, (err, _o, stderr) => {
      const text = String(stderr);
      // Idempotent like the ioctl path: already frozen / not frozen are fine.
      if (!err || /busy|Invalid argument/i.test(text)) resolve();
      else reject(new EnvdError(Code.Internal, `fsfreeze ${op} ${path} failed: ${text.trim() || err.message}`));
    });
  });
}
