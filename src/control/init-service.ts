/**
 * POST /init's logic (docs/protocol.md §6.2–6.4), serialised by one lock:
 *
 *  1. wait for the lock (a caller that leaves while waiting gets Unavailable and changes nothing);
 *  2. check the access token against the stored one and the metadata hash (§6.3) → Unauthenticated;
 *  3. a timestamp older than the newest applied one → nothing is applied (the answer is still 204);
 *  4. check what needs the system: the default user exists, the default workdir is a directory;
 *  5. apply, fallible steps first so a failure leaves the session as it was: set the clock when it
 *     drifted (a failure is only logged), install the CA, mount the volumes; then the in-memory
 *     state at once (env, token, user, workdir) and the events host entry.
 *
 * The same /init twice leaves the same state: a CA equal to the installed one is not appended
 * again, mounted volumes of the same lifecycle are not remounted, the hosts file is not rewritten.
 *
 * A `lifecycle_id` different from the last one (Wrenn sends a new one on boot and after every
 * resume) is a new lifecycle, as in envd-rs: checked after the token and before the stale-timestamp
 * return, it resets the memory preloader, restarts port forwarding (`onLifecycle`), steps the clock
 * to `timestamp` whenever the guest is behind at all (not only by 50 ms: the pause froze it) and
 * asks chrony to step as well. The identity (`sandbox_id`, `template_id`, `proxy_domain`) goes into
 * the internal variables (`WRENN_SANDBOX_ID`, …: /envs and every later process see them) and into
 * `<run dir>/.WRENN_SANDBOX_ID` etc.; no metadata service is needed for it.
 */
import { statSync } from "node:fs";
import { isIPv6 } from "node:net";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { UserDb } from "../users/user-db.ts";
import { AsyncLock } from "./async-lock.ts";
import type { CaInstaller } from "./ca-bundle.ts";
import { type ClockSetter, chronyMakestep, shouldSetClock, shouldStepOnNewLifecycle, wallClockNs } from "./clock.ts";
import { writeHostEntry } from "./hosts-file.ts";
import type { InitRequest } from "./init-request.ts";
import { writeRunFile } from "./run-files.ts";
import type { Session } from "../session.ts";
import { checkInitToken } from "./token-decision.ts";
import type { FlavorNames } from "./vm-config.ts";
import type { VolumeMounter } from "./volume-mounts.ts";

export interface InitServiceDeps {
  session: Session;
  users: UserDb;
  log: Logger;
  names: FlavorNames;
  /** Variables /init cannot set (E2B_SANDBOX, the ids, the events address). */
  internalNames: ReadonlySet<string>;
  /** The metadata's accessTokenHash; undefined when not in Firecracker. */
  mmdsTokenHash: ((signal: AbortSignal) => Promise<string | undefined>) | undefined;
  setClock: ClockSetter;
  ca: CaInstaller;
  mounts: VolumeMounter;
  hostsFile: string;
  /** Aborted at shutdown: in-flight mounts are killed. */
  shutdownSignal: AbortSignal;
  /** Called after every successful /init, stale ones included (E2B re-polls the metadata then). */
  onInit?: () => void;
  /** A new lifecycle_id arrived (before anything else of that /init is applied). */
  onLifecycle?: (lifecycleID: string) => void | Promise<void>;
  /** Where the identity files go (`/run/wrenn`, `/run/e2b`). */
  runDir?: string;
  /** PATH for `chronyc`. */
  path?: string;
  /**
   * Asks chrony to step, on a new lifecycle (not awaited; its outcome does not matter). Default:
   * `chronyc -a makestep` (control/clock.ts `chronyMakestep`); the daemon passes ENVD_CHRONYC_COMMAND
   * through it, unit tests a recorder.
   */
  stepChrony?: () => void;
}

export type InitOutcome = "applied" | "stale";

export class InitService {
  readonly #deps: InitServiceDeps;
  readonly #lock = new AsyncLock();
  /** Highest timestamp applied so far, in ns. */
  #lastTimestampNs: bigint | undefined;
  #lifecycleID: string | undefined;

  constructor(deps: InitServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Handles one parsed /init. `receivedAt` is `process.hrtime.bigint()` when the request arrived,
   * so the clock is set to the host's time plus the time spent here.
   */
  async handle(req: InitRequest, opts: { signal: AbortSignal; receivedAt: bigint }): Promise<InitOutcome> {
    let release: () => void;
    if (this.#lock.held) this.#deps.log.debug("init waits for another /init");
    try {
      release = await this.#lock.acquire(opts.signal);
    } catch {
      this.#deps.log.info("init abandoned while waiting for another /init");
      throw new EnvdError(Code.Unavailable, "the request was cancelled while waiting for another /init");
    }
    let outcome: InitOutcome;
    try {
      outcome = await this.#handleLocked(req, opts);
    } finally {
      release();
    }
    this.#deps.onInit?.();
    return outcome;
  }

  async #handleLocked(req: InitRequest, opts: { signal: AbortSignal; receivedAt: bigint }): Promise<InitOutcome> {
    const { session, log } = this.#deps;
    const lookup = this.#deps.mmdsTokenHash;
    await checkInitToken({
      stored: session.compareAccessToken(req.accessToken),
      requested: req.accessToken,
      mmdsHash: lookup
        ? async () => {
            const hash = await lookup(opts.signal);
            // A lookup cut short by the caller leaving is not "metadata unavailable" (which would
            // let a first token through): stop here, nothing applied.
            if (opts.signal.aborted) throw new EnvdError(Code.Canceled, "the request was cancelled");
            return hash;
          }
        : async () => undefined,
    });

    const stale = req.timestampNs !== undefined && this.#lastTimestampNs !== undefined && req.timestampNs < this.#lastTimestampNs;
    // Bad input changes nothing, a new lifecycle included.
    if (!stale) this.#checkSystem(req);
    const newLifecycle = req.lifecycleID !== undefined && req.lifecycleID !== this.#lifecycleID;
    if (newLifecycle) await this.#beginLifecycle(req, opts.receivedAt);
    if (stale) {
      log.info("stale /init ignored", { timestampNs: String(req.timestampNs), newestNs: String(this.#lastTimestampNs) });
      return "stale";
    }

    if (req.timestampNs !== undefined && !newLifecycle) await this.#syncClock(req.timestampNs, opts.receivedAt);
    if (req.caBundle !== undefined) this.#deps.ca.install(req.caBundle);
    if (req.volumeMounts && req.volumeMounts.length > 0) {
      await this.#deps.mounts.mountAll(req.volumeMounts, req.lifecycleID, this.#deps.shutdownSignal);
    }

    // Everything below cannot fail: the session changes all at once.
    if (req.envVars) session.initEnv = this.#withoutInternal(req.envVars);
    session.setAccessToken(req.accessToken);
    if (req.defaultUser !== undefined) session.defaultUser = req.defaultUser;
    if (req.defaultWorkdir !== undefined) session.defaultWorkdir = req.defaultWorkdir;
    if (req.lifecycleID !== undefined) this.#lifecycleID = req.lifecycleID;
    if (req.timestampNs !== undefined) this.#lastTimestampNs = req.timestampNs;
    if (req.hyperloopIP !== undefined) this.#pinEventsHost(req.hyperloopIP);
    this.#setIdentity(req);
    log.info("init applied", {
      envVars: req.envVars?.size,
      token: req.accessToken !== undefined,
      defaultUser: req.defaultUser,
      defaultWorkdir: req.defaultWorkdir,
      mounts: req.volumeMounts?.length,
      lifecycleID: this.#lifecycleID,
    });
    return "applied";
  }

  async #beginLifecycle(req: InitRequest, receivedAt: bigint): Promise<void> {
    const id = req.lifecycleID as string;
    this.#deps.log.info("new lifecycle", { lifecycleID: id, previous: this.#lifecycleID });
    this.#lifecycleID = id;
    try {
      await this.#deps.onLifecycle?.(id);
    } catch (err) {
      this.#deps.log.error("lifecycle change failed", { err: String(err) });
    }
    if (req.timestampNs !== undefined) await this.#syncClock(req.timestampNs, receivedAt, { step: true });
    // chrony (when it runs) steps too, from its own reference; not awaited, failures do not matter.
    if (this.#deps.stepChrony) this.#deps.stepChrony();
    else void chronyMakestep(undefined, this.#deps.path ?? "/usr/sbin:/usr/bin:/sbin:/bin");
  }

  #setIdentity(req: InitRequest): void {
    const { names, session, log } = this.#deps;
    const pairs: [string, string | undefined][] = [
      [names.sandboxId, req.sandboxId],
      [names.templateId, req.templateId],
      [names.proxyDomain, req.proxyDomain],
    ];
    for (const [name, value] of pairs) {
      if (value === undefined) continue;
      session.internalEnv.set(name, value);
      if (this.#deps.runDir === undefined) continue;
      try {
        writeRunFile(this.#deps.runDir, `.${name}`, value, 0o666);
      } catch (err) {
        log.warn("could not write the identity file", { dir: this.#deps.runDir, name, err: String(err) });
      }
    }
  }

  #checkSystem(req: InitRequest): void {
    if (req.defaultUser !== undefined && !this.#deps.users.lookup(req.defaultUser)) {
      throw new EnvdError(Code.InvalidArgument, `defaultUser: invalid username: '${req.defaultUser}'`);
    }
    if (req.defaultWorkdir !== undefined) {
      let isDir = false;
      try {
        isDir = statSync(req.defaultWorkdir).isDirectory();
      } catch {
        // missing
      }
      if (!isDir) throw new EnvdError(Code.InvalidArgument, `defaultWorkdir: '${req.defaultWorkdir}' is not an existing directory`);
    }
  }

  async #syncClock(hostNs: bigint, receivedAt: bigint, opts: { step?: boolean } = {}): Promise<void> {
    const now = wallClockNs();
    // A new lifecycle steps whenever the guest is behind; otherwise only beyond the thresholds, so
    // small drifts never jump.
    const set = opts.step ? shouldStepOnNewLifecycle(now, hostNs) : shouldSetClock(now, hostNs);
    if (!set) return;
    const target = hostNs + (process.hrtime.bigint() - receivedAt);
    try {
      await this.#deps.setClock(target);
      this.#deps.log.info("clock set", { driftMs: Number((now - hostNs) / 1_000_000n) });
    } catch (err) {
      this.#deps.log.error("could not set the clock", { err: String(err) });
    }
  }

  #withoutInternal(vars: Map<string, string>): Map<string, string> {
    const dropped = [...vars.keys()].filter((k) => this.#deps.internalNames.has(k));
    if (dropped.length === 0) return new Map(vars);
    this.#deps.log.warn("init envVars may not set internal variables; ignored", { names: dropped });
    return new Map([...vars].filter(([k]) => !this.#deps.internalNames.has(k)));
  }

  #pinEventsHost(ip: string): void {
    const { names, hostsFile, session, log } = this.#deps;
    try {
      writeHostEntry(hostsFile, names.eventsHost, ip);
      session.internalEnv.set(names.eventsAddress, `http://${isIPv6(ip) ? `[${ip}]` : ip}`);
    } catch (err) {
      log.error("could not pin the events host", { file: hostsFile, err: String(err) });
    }
  }
}
