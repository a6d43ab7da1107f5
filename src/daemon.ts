/**
 * Builds the subsystems in order, wires them to the server, and tears them down in reverse.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Config } from "./config.ts";
import { readOwnMemoryProtection } from "./control/memory-protection.ts";
import { addRoutes, addUpgradeRoutes, type RouteDeps } from "./http/routes.ts";
import { Router } from "./http/router.ts";
import { UpgradeRouter } from "./http/upgrade-router.ts";
import { DisposableStore, toDisposable } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { createCgroups } from "./process/cgroups.ts";
import { ProcessManager } from "./process/process-manager.ts";
import { Code, EnvdError } from "./errors.ts";
import { ownTempFiles, sweepLeftovers } from "./fs/own-temp-files.ts";
import { PortScanner } from "./ports/port-scanner.ts";
import { RPC_PREFIXES, rpcServices } from "./rpc/services.ts";
import { WatchEngine } from "./fs/watch-engine.ts";
import { WatcherRegistry } from "./fs/watcher-registry.ts";
import { EnvdServer } from "./server.ts";
import { UserDb } from "./users/user-db.ts";
import { CaInstaller } from "./control/ca-bundle.ts";
import { chronyMakestep, createClockSetter } from "./control/clock.ts";
import { InitService } from "./control/init-service.ts";
import type { LogShipper } from "./upkeep/log-shipper.ts";
import { HeapTrimmer } from "./upkeep/heap-trimmer.ts";
import { CpuSampler } from "./upkeep/metrics.ts";
import { PhysicalDisks, readIoCounters } from "./upkeep/activity.ts";
import { BlockVolumes } from "./control/block-volumes.ts";
import { MemoryPreloader, workerWalk } from "./snapshot/memory-preload.ts";
import { syncFilesystems } from "./snapshot/snapshot-lifecycle.ts";
import { loadLibc } from "./sys/libc.ts";
import { MetadataPoller, MmdsClient } from "./control/mmds.ts";
import { writeBootMarker } from "./control/run-files.ts";
import { Session } from "./session.ts";
import { startBootCommand } from "./process/start-command.ts";
import { createVmLifecycle, type VmLifecycle } from "./snapshot/vm-lifecycle.ts";
import { protectDaemonFromOom } from "./upkeep/oom-score.ts";
import { flavorNames, internalEnvNames } from "./control/vm-config.ts";
import { VolumeMounter } from "./control/volume-mounts.ts";

/** How long after listening the background loops start (see build()). */
const LOOPS_START_DELAY_MS = 100;

type RpcHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export interface Daemon extends AsyncDisposable {
  port: number;
  /**
   * Graceful shutdown: stop accepting, end processes (SIGTERM, then SIGKILL), close connections.
   * Idempotent; `[Symbol.asyncDispose]` is the same.
   */
  close(): Promise<void>;
}


/**
 * Builds every subsystem and starts listening. Each one is handed to one DisposableStore in the
 * statement that creates it, so closing (or a start that fails half-way, a port already taken
 * for example) disposes exactly what exists, in reverse order: the listener stops accepting,
 * the background loops and the snapshot machinery stop, the processes end (their streams get
 * their end events while idle keep-alive connections are closed), watches end, request signals
 * abort, and last the open connections are drained and closed.
 */
export async function createDaemon(
  config: Config,
  log: Logger,
  env: NodeJS.ProcessEnv,
  extras: { logShipper?: LogShipper | undefined } = {},
): Promise<Daemon> {
  const store = new DisposableStore();
  try {
    return await build(store, config, log, env, extras);
  } catch (err) {
    await store[Symbol.asyncDispose]().catch((disposeErr: unknown) =>
      log.warn("cleanup after a failed start failed too", { err: String(disposeErr) }),
    );
    throw err;
  }
}

async function build(
  store: DisposableStore,
  config: Config,
  log: Logger,
  env: NodeJS.ProcessEnv,
  extras: { logShipper?: LogShipper | undefined },
): Promise<Daemon> {
  const path = env.PATH ?? "";
  protectDaemonFromOom(log);
  const session = new Session();
  const names = flavorNames(config.flavor);
  session.internalEnv.set(names.sandbox, config.isNotFc ? "false" : "true");
  const vmLog = log.child({ component: "vm" });
  try {
    writeBootMarker(config.vm.runDir, names.sandbox, !config.isNotFc);
  } catch (err) {
    vmLog.warn("could not write the boot marker", { dir: config.vm.runDir, err: String(err) });
  }

  // Request handlers are bound below, once the services exist; nothing is served before listen().
  const router = new Router(log.child({ component: "http" }));
  const upgrades = new UpgradeRouter(log.child({ component: "ws" }));
  const rpcHandler: { handle?: RpcHandler } = {};
  const shutdown = new AbortController();
  // Disposed last: drain and close the connections that are still open.
  const server = store.add(
    new EnvdServer({
      log,
      session,
      router,
      upgrades,
      rpc: (req, res) => rpcHandler.handle?.(req, res),
      rpcPrefixes: [...RPC_PREFIXES],
      shutdownSignal: shutdown.signal,
      flavor: config.flavor,
    }),
  );
  // Then: every request's signal aborts (streams end, waits give up).
  // Requests still running (an upload) stop and answer 503 with this reason (http/router.ts).
  store.add(toDisposable(() => shutdown.abort(new EnvdError(Code.Unavailable, "the daemon is shutting down", { httpStatus: 503 }))));

  const watches = store.add(new WatchEngine(log.child({ component: "watch" })));
  // Uploads' temporary files: journaled so a crash's leftovers are removed at the next start.
  const stateDir = env.ENVD_STATE_DIR || "/var/lib/envd";
  ownTempFiles.configure({ stateDir, log: log.child({ component: "files" }) });
  sweepLeftovers(stateDir, log.child({ component: "files" }));
  const watchers = store.add(new WatcherRegistry());
  const users = new UserDb();
  // Set up before listening (controllers, groups, limits); the groups outlive the daemon, so nothing to dispose.
  const cgroups = createCgroups({ root: config.cgroupRoot, disabled: config.noCgroups, log: log.child({ component: "cgroups" }) });
  const processes = new ProcessManager({ session, log, daemonPath: path, cgroupOf: (kind) => cgroups.procsPath(kind), outputLog: extras.logShipper });
  store.add(
    toDisposable(async () => {
      // Keep-alive connections must not carry new requests while processes end: close them as
      // soon as they are idle (streams keep theirs until their end event is written).
      server.closeIdleConnections();
      const idleSweep = setInterval(() => server.closeIdleConnections(), 50);
      idleSweep.unref();
      // Ending the processes ends their streams with a proper end event.
      await processes[Symbol.asyncDispose]().finally(() => clearInterval(idleSweep));
    }),
  );
  processes.detectTools();

  // WatchPorts / WaitForPort; hides the daemon's own port forwards (they mirror a guest listener).
  const forwardAddresses = new Set(config.lifecycle.forwardAddresses);
  const portScanner = store.add(new PortScanner({ hide: (l) => l.pid === process.pid && forwardAddresses.has(l.address) }));

  // Each Connect service is loaded on its first request (rpc/lazy-services.ts).
  rpcHandler.handle = rpcServices({
    log,
    shutdownSignal: shutdown.signal,
    process: { processes, users, session },
    filesystem: { users, session, watches, watchers },
    ports: { scanner: portScanner },
  }).handle;

  const mmds = new MmdsClient(config.vm.mmdsUrl);
  const metadata = store.add(
    new MetadataPoller({
      client: mmds,
      session,
      names,
      runDir: config.vm.runDir,
      log: vmLog,
      onData: (data) => extras.logShipper?.setTarget(data),
    }),
  );
  if (!config.isNotFc) metadata.start();
  const disks = new PhysicalDisks(config.vm.sysBlockDir);
  const cpu = store.add(new CpuSampler({ readIo: () => readIoCounters(disks) }));
  // /memory/preload's walk (a worker thread) and /volumes (Wrenn's host, both flavors).
  const preloader = store.add(new MemoryPreloader({ log: vmLog, startWalk: workerWalk(config.vm.memory) }));
  const volumes = new BlockVolumes({
    log: vmLog,
    sysBlockDir: config.vm.sysBlockDir,
    devDir: config.vm.devDir,
    sync: () => syncFilesystems(loadLibc(), path),
  });
  // Gives memory back once a burst is over (docs/benchmarks.md: RSS after a burst), packing the
  // ended processes' records first (ended-process.ts).
  // Quiet: no request or upgrade in flight, no CreateWatcher watch, no relayed port-forward
  // connection (heap-trimmer.ts: only then does Bun also shrink its heap).
  const heap = store.add(
    new HeapTrimmer({
      log: log.child({ component: "heap" }),
      quiet: () => server.quiet && watchers.size === 0 && vm.ports.list().every((f) => f.connections === 0),
      beforeTrim: () => processes.table.packEnded(),
      connections: () => server.connections.size,
      released: () => processes.table.releasedOutputBytes,
    }),
  );

  const setClock = createClockSetter(config.vm.clockCommand, path);
  // Snapshot/restore, port forwarding, reclaim, freeze; it stops the loops it was given on a snapshot.
  const vm: VmLifecycle = store.add(
    createVmLifecycle({
      lifecycle: config.lifecycle,
      log,
      path,
      server,
      cgroups,
      setClock,
      chronyc: config.vm.chronycCommand,
      loops: [
        { name: "cpu-sampler", start: () => cpu.start(), stop: () => cpu.stop() },
        { name: "heap-trimmer", start: () => heap.start(), stop: () => heap.stop() },
        portScanner,
        { name: "metadata-poller", start: () => !config.isNotFc && metadata.start(60_000), stop: () => metadata.stop() },
      ],
    }),
  );
  const init = new InitService({
    session,
    users,
    log: log.child({ component: "init" }),
    names,
    internalNames: internalEnvNames(names),
    mmdsTokenHash: config.isNotFc ? undefined : (signal) => mmds.accessTokenHash(signal),
    setClock,
    ca: new CaInstaller({ bundle: config.vm.caBundlePath, cert: config.vm.caCertPath }, vmLog),
    mounts: new VolumeMounter({ log: vmLog }),
    hostsFile: config.vm.hostsFile,
    shutdownSignal: shutdown.signal,
    runDir: config.vm.runDir,
    path,
    stepChrony: () => void chronyMakestep(config.vm.chronycCommand, path),
    // As envd-rs: a new lifecycle_id (boot, every resume) resets the memory preloader and starts
    // port forwarding over.
    onLifecycle: async () => {
      preloader.newLifecycle();
      await vm.restartPortForwarding();
    },
    // As E2B envd: after each /init, look at the metadata again for up to 60 s (resume updates it).
    onInit: () => {
      vm.onInit();
      if (!config.isNotFc) metadata.start(60_000);
    },
  });
  const routeDeps: RouteDeps = {
    flavor: config.flavor,
    session,
    users,
    log,
    init,
    cpu,
    snapshot: vm.snapshot,
    freezer: vm.freezer,
    preloader,
    volumes,
    onHealth: (socket) => vm.onHealth(socket),
    processes,
    memory: () => readOwnMemoryProtection(cgroups.root),
  };
  addRoutes(router, routeDeps);
  addUpgradeRoutes(upgrades, routeDeps);

  const address = await server.listen(config.port, config.host);
  // The background loops start a moment after the daemon serves: the host polls /health right
  // after boot, and the first port scan and samples would otherwise be in its way (they made the
  // start until /health ~8 ms longer). A snapshot taken before then leaves them stopped (the
  // restore starts them).
  const loopsStart = setTimeout(() => {
    if (vm.loops.quiesced) return;
    cpu.start();
    heap.start();
    vm.startLoops();
  }, LOOPS_START_DELAY_MS);
  loopsStart.unref();
  store.add(toDisposable(() => clearTimeout(loopsStart)));
  // Disposed first: no new connections while everything else winds down.
  store.add(toDisposable(() => void server.stopAccepting()));
  if (config.cmd !== undefined && config.cmd !== "") {
    await startBootCommand(config.cmd, { processes, users, session, log });
  }

  const close = () => store[Symbol.asyncDispose]();
  return { port: address.port, close, [Symbol.asyncDispose]: close };
}
