/**
 * Entry point: parse flags, build the daemon, handle signals. The only place that exits.
 */
import { parseConfig, USAGE } from "./config.ts";
import { createLogger } from "./log.ts";
import { runInit, shouldRunInit } from "./process/reaper-init.ts";
import { BUILD_COMMIT, ENVD_VERSION } from "./version.ts";

/** Longest a clean shutdown may take before the daemon exits 1 anyway. */
const SHUTDOWN_WATCHDOG_MS = 30_000;

// `envd ports` is a one-shot command run inside the sandbox: it must answer fast, so nothing of the
// daemon is loaded for it (src/ports/ports-command.ts).
if (process.argv[2] === "ports") {
  const { runPortsCommand } = await import("./ports/ports-command.ts");
  const code = runPortsCommand(process.argv.slice(3), process.env, {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
  });
  // Let stdout drain (a pipe) before exiting.
  process.stdout.write("", () => process.exit(code));
  await new Promise(() => {});
}

const parsed = parseConfig(process.argv.slice(2), process.env);
switch (parsed.kind) {
  case "version":
    process.stdout.write(`${ENVD_VERSION}\n`);
    process.exit(0);
    break;
  case "commit":
    process.stdout.write(`${BUILD_COMMIT}\n`);
    process.exit(0);
    break;
  case "help":
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
    break;
  case "error":
    process.stderr.write(`${parsed.message}\n${USAGE}\n`);
    process.exit(2);
    break;
  case "run": {
    const config = parsed.config;
    // As PID 1 (or with -reaper on) this process becomes a small reaping init and runs the daemon
    // as its child: Node and Bun cannot reap orphans themselves (docs/architecture.md).
    if (shouldRunInit(config.lifecycle.reaper, process.env)) {
      process.exit(await runInit({ log: createLogger(config.logLevel).child({ component: "init" }), env: process.env }));
    }
    // From here on a SIGTERM or SIGINT stops the daemon cleanly, also one that arrives while the
    // daemon's modules load or while it is being built: it is remembered and acted on once the
    // daemon exists (the default action would kill it, and a supervisor may signal at any time).
    const early: string[] = [];
    let onSignal = (signal: string): void => {
      early.push(signal);
    };
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    process.on("SIGINT", () => onSignal("SIGINT"));
    process.on("SIGPIPE", () => {});
    // Loaded only here, so the init above stays small (Bun: 24 instead of 51 MiB resident).
    const [{ createDaemon }, { LogShipper }] = await Promise.all([import("./daemon.ts"), import("./upkeep/log-shipper.ts")]);
    // In Firecracker the log lines also go to the host's collector (its address comes from MMDS).
    const shipper = config.isNotFc ? undefined : new LogShipper();
    const log = createLogger(config.logLevel, (line) => {
      process.stdout.write(line);
      shipper?.write(line);
    });
    // Read the daemon's own environment once; children get only what launch-plan gives them.
    const env = { ...process.env };
    process.on("uncaughtException", (err) => log.error("uncaught exception", { err, stack: err.stack }));
    process.on("unhandledRejection", (err) => log.error("unhandled rejection", { err: String(err) }));

    let daemon: Awaited<ReturnType<typeof createDaemon>> | undefined;
    /** The first stop signal; set once, whether the daemon exists yet or not. */
    let stopping: string | undefined;
    const close = (d: NonNullable<typeof daemon>) =>
      d.close().then(
        async () => {
          log.info("stopped");
          await shipper?.close(1_000);
          process.exit(0);
        },
        (err: unknown) => {
          log.error("shutdown failed", { err: String(err) });
          process.exit(1);
        },
      );
    const stop = (signal: string) => {
      // A second signal must not cut the shutdown short: children would be orphaned mid-way.
      if (stopping !== undefined) {
        log.info("already shutting down", { signal });
        return;
      }
      stopping = signal;
      log.info("shutting down", { signal, ...(daemon === undefined ? { duringStart: true } : {}) });
      // Last resort if something hangs (also a start that never finishes): the process table
      // already SIGKILLs after its grace period. Deliberately ref'd: it also keeps the event loop
      // alive until close() is done, because the shutdown waits on unref'd timers and Bun would
      // otherwise exit 0 half-way, on an empty loop.
      setTimeout(() => {
        log.error("shutdown did not finish in time");
        process.exit(1);
      }, SHUTDOWN_WATCHDOG_MS);
      if (daemon !== undefined) void close(daemon); // else: closed as soon as it is built
    };
    onSignal = stop;
    for (const signal of early) stop(signal);
    log.debug("starting", { version: ENVD_VERSION, pid: process.pid });
    daemon = await createDaemon(config, log, env, { logShipper: shipper }).catch((err: unknown) => {
      log.error("failed to start", { err: String(err) });
      process.exit(1);
    });
    log.info("listening", {
      port: daemon.port,
      version: ENVD_VERSION,
      commit: BUILD_COMMIT,
      runtime: typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "node",
      pid: process.pid,
    });
    if (stopping !== undefined) void close(daemon);
    break;
  }
}
