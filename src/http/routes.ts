/**
 * The REST route table: every path the daemon answers outside Connect, in one place, and the
 * WebSocket routes beside it (`addUpgradeRoutes`: HTTP/1.1 upgrades handed over by server.ts).
 * daemon.ts builds the domain objects and calls both once, before the server listens.
 */
import type { Socket } from "node:net";
import type { InitService } from "../control/init-service.ts";
import type { MemoryProtection } from "../control/memory-protection.ts";
import type { Flavor } from "../control/vm-config.ts";
import type { Logger } from "../log.ts";
import type { Session } from "../session.ts";
import type { FreezeController } from "../snapshot/freeze-controller.ts";
import type { SnapshotLifecycle } from "../snapshot/snapshot-lifecycle.ts";
import type { BlockVolumes } from "../control/block-volumes.ts";
import type { MemoryPreloader } from "../snapshot/memory-preload.ts";
import type { CpuSampler } from "../upkeep/metrics.ts";
import type { ProcessManager } from "../process/process-manager.ts";
import type { UserDb } from "../users/user-db.ts";
import { getActivity } from "./activity.ts";
import { postCollapse } from "./collapse.ts";
import { getEnvs } from "./envs.ts";
import { postFreeze, postFsFreeze, postFsThaw, postUnfreeze } from "./freeze.ts";
import { getHealth } from "./health.ts";
import { postInit } from "./init.ts";
import { lazyRoute, lazyUpgrade } from "./lazy-route.ts";
import { getMemoryPreload, postMemoryPreload, postMemoryPreloadCancel } from "./memory.ts";
import { getMetrics } from "./metrics.ts";
import type { Router } from "./router.ts";
import { postSnapshotPrepare } from "./snapshot.ts";
import { getTunnel, getTunnelUpgrade } from "./tunnel.ts";
import type { UpgradeRouter } from "./upgrade-router.ts";
import { postVolumesMount, postVolumesUnmount } from "./volumes.ts";

export interface RouteDeps {
  flavor: Flavor;
  session: Session;
  users: UserDb;
  log: Logger;
  init: InitService;
  cpu: CpuSampler;
  snapshot: SnapshotLifecycle;
  freezer: FreezeController;
  preloader: MemoryPreloader;
  volumes: BlockVolumes;
  /** Runs before every GET /health answer (after a snapshot prepare: the restore). */
  onHealth: (socket: Socket | undefined) => Promise<void>;
  processes: ProcessManager;
  /** The memory protection on the daemon's cgroup chain, for X-Envd-Memory (read per /init). */
  memory: () => MemoryProtection;
}

export function addRoutes(router: Router, deps: RouteDeps): Router {
  const { session } = deps;
  const files = { session, users: deps.users, log: deps.log.child({ component: "files" }) };
  return router
    .add("GET", "/health", getHealth(deps.flavor, (ctx) => deps.onHealth(ctx.req.socket as Socket | undefined)))
    // /files and its dependencies (zlib, busboy, the Content-Type table, tar) load on the first transfer
    // (lazy-route.ts). A tar request (Accept/format, tar Content-Type) is answered by
    // files-tar.ts; any other by the ordinary handler, unchanged.
    .add(
      "GET",
      "/files",
      lazyRoute(async () => {
        const [{ getFilesOrTar }, { getFiles }] = await Promise.all([import("./files-tar.ts"), import("./get-files.ts")]);
        return getFilesOrTar(files, getFiles(files));
      }),
    )
    .add(
      "POST",
      "/files",
      lazyRoute(async () => {
        const [{ postFilesOrTar }, { postFiles }] = await Promise.all([import("./files-tar.ts"), import("./post-files.ts")]);
        return postFilesOrTar(files, postFiles(files));
      }),
    )
    .add("PUT", "/files", lazyRoute(async () => (await import("./post-files.ts")).putFiles(files)))
    .add("POST", "/files/compose", lazyRoute(async () => (await import("./post-files-compose.ts")).postFilesCompose(files)))
    .add("POST", "/init", postInit(deps.init, session, deps.memory))
    .add("GET", "/envs", getEnvs(session))
    .add("GET", "/metrics", getMetrics(deps.cpu))
    .add("POST", "/snapshot/prepare", postSnapshotPrepare(deps.snapshot, { alwaysReclaim: deps.flavor === "wrenn" }))
    .add("POST", "/freeze", postFreeze(deps.freezer))
    .add("POST", "/unfreeze", postUnfreeze(deps.freezer))
    .add("POST", "/fsfreeze", postFsFreeze(deps.freezer))
    .add("POST", "/fsthaw", postFsThaw(deps.freezer))
    .add("POST", "/collapse", postCollapse(deps.log.child({ component: "collapse" })))
    // Without an upgrade (or over HTTP/2): validated, then 426.
    .add("GET", "/tunnel", getTunnel())
    .add("GET", "/exec", lazyRoute(async () => (await import("./exec.ts")).getExec()))
    // Today's Wrenn host (docs/compatibility.md, "The Wrenn host, today"); harmless to E2B
    // clients, so in both flavors.
    .add("GET", "/activity", getActivity(deps.cpu))
    .add("POST", "/memory/preload", postMemoryPreload(deps.preloader))
    .add("GET", "/memory/preload", getMemoryPreload(deps.preloader))
    .add("POST", "/memory/preload/cancel", postMemoryPreloadCancel(deps.preloader))
    .add("POST", "/volumes/mount", postVolumesMount(deps.volumes))
    .add("POST", "/volumes/unmount", postVolumesUnmount(deps.volumes));
}

/** The WebSocket routes; every path here is also a REST route above (for the 426). */
export function addUpgradeRoutes(upgrades: UpgradeRouter, deps: RouteDeps): UpgradeRouter {
  const { session } = deps;
  // /exec needs the Process descriptors (ws/exec-session.ts): loaded on the first /exec.
  const execDeps = { processes: deps.processes, users: deps.users, session, log: deps.log.child({ component: "exec" }) };
  return upgrades
    .add("/tunnel", getTunnelUpgrade(deps.log.child({ component: "tunnel" })))
    .add("/exec", lazyUpgrade(async () => (await import("./exec.ts")).getExecUpgrade(execDeps)));
}
