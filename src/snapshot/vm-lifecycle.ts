/**
 * Builds the VM-lifecycle subsystem in one place, so daemon.ts only wires it: the loop registry,
 * port forwarding, the page-cache reclaimer, snapshot prepare/restore, the freeze endpoints and
 * their routes. See vm/snapshot.ts for what prepare and restore do.
 *
 * Other subsystems with background loops register them in `loops` (start/stop), so a snapshot
 * never catches them mid-work.
 */
import { writeFileSync } from "node:fs";
import type { Socket } from "node:net";
import type { Config } from "../config.ts";
import { postFreeze, postFsFreeze, postFsThaw, postUnfreeze } from "../http/freeze.ts";
import type { RouteContext, Router } from "../http/router.ts";
import { postSnapshotPrepare } from "../http/snapshot.ts";
import type { Logger } from "../log.ts";
import { PortForwarder } from "../ports/port-forwarder.ts";
import type { Cgroups } from "../process/cgroups.ts";
import { loadLibc } from "../sys/libc.ts";
import type { ClockSetter } from "../control/clock.ts";
import { PageCacheReclaimer } from "../upkeep/reclaim.ts";
import { type BackgroundLoop, type ConnectionControl, LoopRegistry, SnapshotLifecycle, syncFilesystems } from "./snapshot-lifecycle.ts";
import { resyncClock } from "./clock-resync.ts";
import { reseedKernelRandom } from "./entropy.ts";
import { FreezeController } from "./freeze-controller.ts";

/** The daemon's own OOM score: below everything else, but (unlike -1000) still killable as a last resort. */
export const DAEMON_OOM_SCORE_ADJ = -999;

export interface VmLifecycle extends AsyncDisposable {
  loops: LoopRegistry;
  snapshot: SnapshotLifecycle;
  freezer: FreezeController;
  ports: PortForwarder;
  reclaimer: PageCacheReclaimer;
  /** For GET /health: runs the restore after a prepare. */
  onHealth(ctx: RouteContext): Promise<void>;
  /** For every successful POST /init: thaws the workload and runs the restore after a prepare. */
  onInit(): void;
}

export interface VmLifecycleOptions {
  config: Config;
  log: Logger;
  /** PATH of the daemon (sync, chronyc, fsfreeze). */
  path: string;
  server: ConnectionControl;
  cgroups: Cgroups;
  setClock: ClockSetter;
  router: Router;
  /** Loops built elsewhere (CPU sampler, metadata poller). */
  loops?: BackgroundLoop[];
}

/** Lowers the daemon's OOM score so the workload is killed first (children get 100 back in their wrapper). */
export function protectDaemonFromOom(log: Logger): void {
  try {
    writeFileSync("/proc/self/oom_score_adj", String(DAEMON_OOM_SCORE_ADJ));
  } catch (err) {
    log.debug("cannot lower the daemon's oom_score_adj", { err: String(err) });
  }
}

export function createVmLifecycle(opts: VmLifecycleOptions): VmLifecycle {
  const { config, path, server, cgroups, router } = opts;
  const log = opts.log.child({ component: "lifecycle" });
  const libc = loadLibc();
  const lc = config.lifecycle;
  const loops = new LoopRegistry(log);
  const sync = () => syncFilesystems(libc, path);

  const ports = new PortForwarder({ log: opts.log.child({ component: "ports" }), bindAddresses: lc.forwardAddresses });
  const reclaimer = new PageCacheReclaimer({
    log,
    thresholdPct: lc.reclaimThresholdPct,
    meminfoPath: lc.meminfoPath,
    dropCachesPath: lc.dropCachesPath,
    sync,
  });
  const registrations = [loops.register(ports), loops.register(reclaimer), ...(opts.loops ?? []).map((l) => loops.register(l))];

  const snapshot = new SnapshotLifecycle({
    log,
    loops,
    server,
    sync,
    dropCaches: (reason) => reclaimer.dropNow(reason),
    reseed: () => reseedKernelRandom(libc),
    resyncClock: () => resyncClock({ libc, setClock: opts.setClock, path }),
  });
  const freezer = new FreezeController({ log, cgroups, lifecycle: snapshot, libc, fsFreezePath: lc.fsFreezePath, path });

  router.add("POST", "/snapshot/prepare", postSnapshotPrepare(snapshot));
  router.add("POST", "/freeze", postFreeze(freezer));
  router.add("POST", "/unfreeze", postUnfreeze(freezer));
  router.add("POST", "/fsfreeze", postFsFreeze(freezer));
  router.add("POST", "/fsthaw", postFsThaw(freezer));

  ports.start();
  reclaimer.start();
  snapshot.startClockWatch();

  return {
    loops,
    snapshot,
    freezer,
    ports,
    reclaimer,
    async onHealth(ctx) {
      await snapshot.onHostContact("health", ctx.req.socket as Socket | undefined);
    },
    onInit() {
      freezer.thawForInit();
      void snapshot.onHostContact("init");
    },
    async [Symbol.asyncDispose]() {
      snapshot.stopClockWatch();
      freezer[Symbol.dispose]();
      for (const r of registrations) r[Symbol.dispose]();
      await Promise.all([ports.stop(), reclaimer.stop()]);
    },
  };
}
