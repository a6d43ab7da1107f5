/**
 * Builds the subsystems in order, wires them to the server, and tears them down in reverse.
 */
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { Config } from "./config.ts";
import { Filesystem } from "./gen/filesystem/filesystem_pb.js";
import { Process } from "./gen/process/process_pb.js";
import { getHealth } from "./http/health.ts";
import { Router } from "./http/router.ts";
import type { Logger } from "./log.ts";
import { ProcessManager } from "./process/process-manager.ts";
import { errorInterceptor } from "./rpc/error-interceptor.ts";
import { createProcessService } from "./rpc/process-service.ts";
import { createFilesystemService } from "./rpc/filesystem-service.ts";
import { WatchEngine } from "./fs/watch-engine.ts";
import { WatcherRegistry } from "./fs/watcher-registry.ts";
import { EnvdServer } from "./server.ts";
import { UserDb } from "./users/user-db.ts";
import { Session } from "./vm/session.ts";

export interface Daemon {
  port: number;
  /** Graceful shutdown: stop accepting, end processes (SIGTERM, then SIGKILL), close connections. Idempotent. */
  close(): Promise<void>;
}

/** Largest RPC request message accepted (an upload goes through /files, not RPC). */
const RPC_READ_MAX_BYTES = 64 << 20;
/** How long shutdown waits for open responses to finish before destroying their connections. */
const SHUTDOWN_DRAIN_MS = 1_000;

export async function createDaemon(config: Config, log: Logger, env: NodeJS.ProcessEnv): Promise<Daemon> {
  const shutdown = new AbortController();
  const session = new Session();
  session.internalEnv.set(config.flavor === "wrenn" ? "WRENN_SANDBOX" : "E2B_SANDBOX", config.isNotFc ? "false" : "true");
  const users = new UserDb();
  const processes = new ProcessManager({ session, log, daemonPath: env.PATH ?? "" });
  const watches = new WatchEngine(log.child({ component: "watch" }));
  const watchers = new WatcherRegistry();

  const rpc = connectNodeAdapter({
    routes: (router) => {
      router.service(Process, createProcessService({ processes, users, session }));
      router.service(Filesystem, createFilesystemService({ users, session, watches, watchers }));
    },
    // Accept gzip requests; never compress responses (legal, and compressing output streams costs
    // more CPU than it saves on loopback and virtio links: ../shared/research/runtime.md pitfall 4).
    acceptCompression: [compressionGzip],
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    readMaxBytes: RPC_READ_MAX_BYTES,
    jsonOptions: { ignoreUnknownFields: true },
    shutdownSignal: shutdown.signal,
    interceptors: [errorInterceptor(log.child({ component: "rpc" }))],
  });

  const router = new Router(log.child({ component: "http" }));
  router.add("GET", "/health", getHealth(config.flavor));

  const server = new EnvdServer({
    log,
    session,
    router,
    rpc,
    rpcPrefixes: ["/process.Process/", "/filesystem.Filesystem/"],
    shutdownSignal: shutdown.signal,
  });
  const address = await server.listen(config.port, config.host);

  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    close() {
      closing ??= (async () => {
        const stopped = server.stopAccepting();
        // Ending the processes ends their streams with a proper end event.
        await processes[Symbol.asyncDispose]();
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
