/**
 * Builds the VM-lifecycle subsystem in one place, so daemon.ts only wires it: the loop registry,
 * port forwarding, the page-cache reclaimer, snapshot prepare/restore and the freeze controller.
 * Their routes are in http/routes.ts. See snapshot/snapshot-lifecycle.ts for what prepare and
 * restore do.
 *
 * Other subsystems with background loops register them in `loops` (start/stop), so a snapshot
 * never catches them mid-work.
 */
import type { Socket } from "node:net";
import type { ClockSetter } from "../control/clock.ts";
import type { Logger } from "../log.ts";
import { PortForwarder } from "../ports/port-forwarder.ts";
import type { Cgroups } from "../process/cgroups.ts";
import { loadLibc } from "../sys/libc.ts";
import { PageCacheReclaimer } from "../upkeep/reclaim.ts";
import { type BackgroundLoop, LoopRegistry } from "./loop-registry.ts";
import { type ConnectionControl, SnapshotLifecycle, syncFilesystems } from "./snapshot-lifecycle.ts";
import { resyncClock } from "./clock-resync.ts";
import { reseedKernelRandom } from "./entropy.ts";
import { FreezeController } from "./freeze-controller.ts";
import type { LifecycleConfig } from "./lifecycle-config.ts";
import { trimFilesystems } from "./fstrim.ts";

export interface VmLifecycle extends AsyncDisposable {
  loops: LoopRegistry;
  snapshot: SnapshotLifecycle;
  freezer: FreezeController;
  ports: PortForwarder;
  reclaimer: PageCacheReclaimer;
  /** For GET /health (the request's socket): runs the restore after a prepare. */
  onHealth(socket: Socket | undefined): Promise<void>;
  /** For every successful POST /init: thaws the workload and runs the restore after a prepare. */
  onInit(): void;
  /** A new lifecycle (/init lifecycle_id): port forwarding starts over (not while quiesced). */
  restartPortForwarding(): Promise<void>;
  /**
   * Starts port forwarding and the page-cache reclaimer (not while quiesced). The daemon calls it
   * once it serves, so the host's first /health does not wait for the first port scan.
   */
  startLoops(): void;
}

export interface VmLifecycleOptions {
  lifecycle: LifecycleConfig;
  log: Logger;
  /** PATH of the daemon (sync, chronyc, fsfreeze). */
  path: string;
  server: ConnectionControl;
  cgroups: Cgroups;
  setClock: ClockSetter;
  /** Program run instead of `chronyc` after a restore (ENVD_CHRONYC_COMMAND). */
  chronyc?: string | undefined;
  /** Loops built elsewhere (CPU sampler, metadata poller). */
  loops?: BackgroundLoop[];
}

export function createVmLifecycle(opts: VmLifecycleOptions): VmLifecycle {
  const { path, server, cgroups } = opts;
  const log = opts.log.child({ component: "lifecycle" });
  // libc (FFI) is bound when a snapshot, freeze or sync first needs it, not at start: binding it
  // costs ~2 MiB resident on Bun, paid by every idle VM.
  const lc = opts.lifecycle;
  const loops = new LoopRegistry(log);
  const sync = () => syncFilesystems(loadLibc(), path);

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
    trim: () => trimFilesystems({ command: lc.fstrimCommand }),
    reseed: () => reseedKernelRandom(loadLibc()),
    resyncClock: () => resyncClock({ libc: loadLibc(), setClock: opts.setClock, path, chronyc: opts.chronyc }),
  });
  const freezer = new FreezeController({ log, cgroups, lifecycle: snapshot,
    get libc() {
      return loadLibc();
    },
    fsFreezePath: lc.fsFreezePath, path });

  snapshot.startClockWatch();

  return {
    loops,
    snapshot,
    freezer,
    ports,
    reclaimer,
    async onHealth(socket) {
      await snapshot.onHostContact("health", socket);
    },
    onInit() {
      freezer.thawForInit();
      void snapshot.onHostContact("init");
    },
    startLoops() {
      if (loops.quiesced) return;
      ports.start();
      reclaimer.start();
    },
    async restartPortForwarding() {
      if (loops.quiesced) return;
      await ports.stop();
      if (!loops.quiesced) ports.start();
    },
    async [Symbol.asyncDispose]() {
      snapshot.stopClockWatch();
      freezer[Symbol.dispose]();
      for (const r of registrations) r[Symbol.dispose]();
      await Promise.all([ports.stop(), reclaimer.stop()]);
    },
  };
}
