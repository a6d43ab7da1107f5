/**
 * Entry point: parse flags, build the daemon, handle signals. The only place that exits.
 */
import { parseConfig, USAGE } from "./config.ts";
import { createDaemon } from "./daemon.ts";
import { createLogger } from "./log.ts";
import { BUILD_COMMIT, ENVD_VERSION } from "./version.ts";

/** Longest a clean shutdown may take before the daemon exits 1 anyway. */
const SHUTDOWN_WATCHDOG_MS = 30_000;

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
    const log = createLogger(config.logLevel);
    // Read the daemon's own environment once; children get only what launch-plan gives them.
    const env = { ...process.env };
    process.on("uncaughtException", (err) => log.error("uncaught exception", { err, stack: err.stack }));
    process.on("unhandledRejection", (err) => log.error("unhandled rejection", { err: String(err) }));
    const daemon = await createDaemon(config, log, env).catch((err: unknown) => {
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
    let stopping = false;
    const stop = (signal: string) => {
      // A second signal must not cut the shutdown short: children would be orphaned mid-way.
      if (stopping) {
        log.info("already shutting down", { signal });
        return;
      }
      stopping = true;
      log.info("shutting down", { signal });
      // Last resort if something hangs: the process table already SIGKILLs after its grace period.
      setTimeout(() => {
        log.error("shutdown did not finish in time");
        process.exit(1);
      }, SHUTDOWN_WATCHDOG_MS).unref();
      daemon.close().then(
        () => {
          log.info("stopped");
          process.exit(0);
        },
        (err: unknown) => {
          log.error("shutdown failed", { err: String(err) });
          process.exit(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGPIPE", () => {});
    break;
  }
}
