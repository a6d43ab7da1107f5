/**
 * Builds the subsystems in order, wires them to the server, and tears them down in reverse.
 */
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { Config } from "./config.ts";
import { Ports } from "./gen/envd/ports_pb.js";
import { Filesystem } from "./gen/filesystem/filesystem_pb.js";
import { Process } from "./gen/process/process_pb.js";
import { addRoutes, addUpgradeRoutes, type RouteDeps } from "./http/routes.ts";
import { readOwnMemoryProtection } from "./control/memory-protection.ts";
import { Router } from "./http/router.ts";
import { UpgradeRouter } from "./http/upgrade-router.ts";
import type { Logger } from "./log.ts";
import { createCgroups } from "./process/cgroups.ts";
import { ProcessManager } from "./process/process-manager.ts";
import { errorInterceptor } from "./rpc/error-interceptor.ts";
import { createProcessService } from "./rpc/process-service.ts";
import { createFilesystemService } from "./rpc/filesystem-service.ts";
import { createPortsService } from "./rpc/ports-service.ts";
import { PortScanner } from "./ports/port-scanner.ts";
import { WatchEngine } from "./fs/watch-engine.ts";
import { WatcherRegistry } from "./fs/watcher-registry.ts";
import { EnvdServer } from "./server.ts";
import { UserDb } from "./users/user-db.ts";
import { CaInstaller } from "./control/ca-bundle.ts";
import { createClockSetter } from "./control/clock.ts";
import { InitService } from "./control/init-service.ts";
import type { LogShipper } from "./upkeep/log-shipper.ts";
import { HeapTrimmer } from "./upkeep/heap-trimmer.ts";
import { CpuSampler } from "./upkeep/metrics.ts";
import { MetadataPoller, MmdsClient } from "./control/mmds.ts";
import { writeBootMarker } from "./control/run-files.ts";
import { Session } from "./session.ts";
import { startBootCommand } from "./process/start-command.ts";
import { createVmLifecycle, type VmLifecycle } from "./snapshot/vm-lifecycle.ts";
import { protectDaemonFromOom } from "./upkeep/oom-score.ts";
import { flavorNames, internalEnvNames } from "./control/vm-config.ts";
import { VolumeMounter } from "./control/volume-mounts.ts";

export interface Daemon {
  port: number;
  /** Graceful shutdown: stop accepting, end processes (SIGTERM, then SIGKILL), close connections. Idempotent. */
  close(): Promise<void>;
}

/** Largest RPC request message accepted (an upload goes through /files, not RPC). */
const RPC_READ_MAX_BYTES = 64 << 20;
/** How long shutdown waits for open responses to finish before destroying their connections. */
const SHUTDOWN_DRAIN_MS = 1_000;

export async function createDaemon(
  config: Config,
  log: Logger,
  env: NodeJS.ProcessEnv,
  extras: { logShipper?: LogShipper | undefined } = {},
): Promise<Daemon> {
  const shutdown = new AbortController();
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
  const mmds = new MmdsClient(config.vm.mmdsUrl);
  const metadata = new MetadataPoller({
    client: mmds,
    session,
    names,
    runDir: config.vm.runDir,
    log: vmLog,
    onData: (data) => extras.logShipper?.setTarget(data),
  });
  if (!config.isNotFc) metadata.start();
  const cpu = new CpuSampler();
  cpu.start();
  // Gives memory back once a burst is over (docs/benchmarks.md: RSS after a burst).
  const heap = new HeapTrimmer({ log: log.child({ component: "heap" }) });
  heap.start();
  const users = new UserDb();
  const cgroups = createCgroups({ root: config.cgroupRoot, disabled: config.noCgroups, log: log.child({ component: "cgroups" }) });
  const processes = new ProcessManager({ session, log, daemonPath: env.PATH ?? "", cgroupOf: (kind) => cgroups.procsPath(kind) });
  // Snapshot/restore, port forwarding, freeze: built once the server exists (below).
  let vm: VmLifecycle | undefined;
  const watches = new WatchEngine(log.child({ component: "watch" }));
  const watchers = new WatcherRegistry();
  // WatchPorts / WaitForPort; hides the daemon's own port forwards (they mirror a guest listener).
  const forwardAddresses = new Set(config.lifecycle.forwardAddresses);
  const portScanner = new PortScanner({ hide: (l) => l.pid === process.pid && forwardAddresses.has(l.address) });

  const rpc = connectNodeAdapter({
    routes: (router) => {
      router.service(Process, createProcessService({ processes, users, session }));
      router.service(Filesystem, createFilesystemService({ users, session, watches, watchers }));
      router.service(Ports, createPortsService({ scanner: portScanner }));
    },
    // Accept gzip requests; never compress responses (legal, and compressing output streams costs
    // more CPU than it saves on loopback and virtio links: docs/compatibility.md, "Response compression").
    acceptCompression: [compressionGzip],
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    readMaxBytes: RPC_READ_MAX_BYTES,
    jsonOptions: { ignoreUnknownFields: true },
    shutdownSignal: shutdown.signal,
    interceptors: [errorInterceptor(log.child({ component: "rpc" }))],
  });

  const setClock = createClockSetter(config.vm.clockCommand, env.PATH ?? "");
  const router = new Router(log.child({ component: "http" }));
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
    // As E2B envd: after each /init, look at the metadata again for up to 60 s (resume updates it).
    onInit: () => {
      vm?.onInit();
      if (!config.isNotFc) metadata.start(60_000);
    },
  });
  const upgrades = new UpgradeRouter(log.child({ component: "ws" }));

  const server = new EnvdServer({
    log,
    session,
    router,
    upgrades,
    rpc,
    rpcPrefixes: ["/process.Process/", "/filesystem.Filesystem/", "/envd.Ports/"],
    shutdownSignal: shutdown.signal,
  });
  vm = createVmLifecycle({
    lifecycle: config.lifecycle,
    log,
    path: env.PATH ?? "",
    server,
    cgroups,
    setClock,
    loops: [
      { name: "cpu-sampler", start: () => cpu.start(), stop: () => cpu.stop() },
      { name: "heap-trimmer", start: () => heap.start(), stop: () => heap.stop() },
      portScanner,
      { name: "metadata-poller", start: () => !config.isNotFc && metadata.start(60_000), stop: () => metadata.stop() },
    ],
  });
  const vmLifecycle = vm;
  const routeDeps: RouteDeps = {
    flavor: config.flavor,
    session,
    users,
    log,
    init,
    cpu,
    snapshot: vm.snapshot,
    freezer: vm.freezer,
    onHealth: (socket) => vmLifecycle.onHealth(socket),
    processes,
    memory: () => readOwnMemoryProtection(cgroups.root),
  };
  addRoutes(router, routeDeps);
  addUpgradeRoutes(upgrades, routeDeps);
  const address = await server.listen(config.port, config.host);
  if (config.cmd !== undefined && config.cmd !== "") {
    await startBootCommand(config.cmd, { processes, users, session, log });
  }

  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    close() {
      closing ??= (async () => {
        const stopped = server.stopAccepting();
        metadata.stop();
        cpu.stop();
        heap.stop();
        await vm?.[Symbol.asyncDispose]();
        // Keep-alive connections must not carry new requests while processes end: close them as
        // soon as they are idle (streams keep theirs until their end event is written).
        server.closeIdleConnections();
        const idleSweep = setInterval(() => server.closeIdleConnections(), 50);
        idleSweep.unref();
        // Ending the processes ends their streams with a proper end event.
        await processes[Symbol.asyncDispose]().finally(() => clearInterval(idleSweep));
        watchers[Symbol.dispose]();
        await watches[Symbol.asyncDispose]();
        shutdown.abort();
        // Give finished responses a moment to flush, closing connections as they go idle.
        const deadline = Date.now() + SHUTDOWN_DRAIN_MS;
        while (server.connections.size > 0 && Date.now() < deadline) {
          server.closeIdleConnections();
          await new Promise((r) => setTimeout(r, 10).unref());
        }
        server.closeConnections();
        await stopped;
      })();
      return closing;
    },
  };
}
