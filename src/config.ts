/** Command-line configuration. Pure: parsing never touches the system. */
import { type Flavor, parseVmConfig, type VmConfig } from "./control/vm-config.ts";
import type { LogLevel } from "./log.ts";
import { type LifecycleConfig, parseLifecycleConfig } from "./snapshot/lifecycle-config.ts";

export interface Config {
  port: number;
  host: string;
  /** Not in Firecracker: no MMDS polling. */
  isNotFc: boolean;
  /** Command started at boot as a tracked process. */
  cmd: string | undefined;
  cgroupRoot: string;
  noCgroups: boolean;
  logLevel: LogLevel;
  flavor: Flavor;
  /** Metadata URL, run dir, hosts file, CA paths, clock command (src/control/vm-config.ts; ENVD_* variables). */
  vm: VmConfig;
  /** Port forwarding, reaper, page-cache reclaim, fsfreeze target (src/snapshot/lifecycle-config.ts). */
  lifecycle: LifecycleConfig;
}

export type ParseResult =
  | { kind: "run"; config: Config }
  | { kind: "version" }
  | { kind: "commit" }
  | { kind: "help" }
  | { kind: "error"; message: string };

export const DEFAULT_PORT = 49983;

const BOOLEAN_FLAGS = new Set(["isnotfc", "no-cgroups", "version", "commit", "help", "verbose"]);
const VALUE_FLAGS = new Set(["port", "host", "cmd", "cgroup-root", "log-level", "flavor", "forward-address", "reaper", "reclaim-threshold"]);

export const USAGE = `Usage: envd [flags]
       envd ports [--domain DOMAIN] [--json]   (inside a sandbox: list reachable ports and their URLs)
  -port N            port to listen on (default ${DEFAULT_PORT}; 0 picks a free one)
  -host ADDR         address to bind (default 0.0.0.0)
  -isnotfc           not running in Firecracker: no MMDS metadata polling
  -cmd CMD           start CMD at boot as a tracked process (tag "startCmd")
  -cgroup-root DIR   cgroup v2 root (default /sys/fs/cgroup)
  -no-cgroups        do not use cgroups
  -log-level LEVEL   debug, info, warn or error (default info); -verbose = debug
  -flavor NAME       e2b (GET /health answers 204) or wrenn (200 {"version"}); default e2b
  -forward-address A host-facing address(es) loopback-only ports are forwarded to, comma-separated
                     (default 169.254.0.21; "" turns port forwarding off)
  -reaper MODE       auto (run a reaping init in front of the daemon when PID 1), on (always, as
                     a child subreaper) or off; default auto
  -reclaim-threshold PCT  drop the page cache above PCT % memory use (default 80; 0 = never)
  -commit            print the build commit and exit
  -version           print the envd version and exit
Flags take one dash or two, and a value as "-flag value" or "-flag=value".`;

/** Parses argv the way Go's flag package does (`-x` and `--x` alike), plus the environment defaults. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ParseResult {
  const values = new Map<string, string>();
  const bools = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      return { kind: "error", message: `unexpected argument: ${arg}` };
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq === -1 ? body : body.slice(0, eq);
    if (BOOLEAN_FLAGS.has(name)) {
      const v = eq === -1 ? "true" : body.slice(eq + 1);
      if (v !== "true" && v !== "false") return { kind: "error", message: `invalid boolean value for -${name}: ${v}` };
      // The last occurrence wins, as with Go's flag package (`-isnotfc -isnotfc=false` is false).
      if (v === "true") bools.add(name);
      else bools.delete(name);
      continue;
    }
    if (!VALUE_FLAGS.has(name)) return { kind: "error", message: `flag provided but not defined: -${name}` };
    let value: string | undefined;
    if (eq !== -1) value = body.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined) return { kind: "error", message: `flag needs an argument: -${name}` };
    }
    values.set(name, value);
  }

  if (bools.has("help")) return { kind: "help" };
  if (bools.has("version")) return { kind: "version" };
  if (bools.has("commit")) return { kind: "commit" };

  const portText = values.get("port") ?? env.ENVD_PORT ?? String(DEFAULT_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) {
    return { kind: "error", message: `invalid value "${portText}" for flag -port` };
  }
  const logLevel = (values.get("log-level") ?? (bools.has("verbose") ? "debug" : env.ENVD_LOG_LEVEL ?? "info")) as LogLevel;
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    return { kind: "error", message: `invalid value "${logLevel}" for flag -log-level` };
  }
  const flavor = (values.get("flavor") ?? env.ENVD_FLAVOR ?? "e2b") as Flavor;
  if (flavor !== "e2b" && flavor !== "wrenn") {
    return { kind: "error", message: `invalid value "${flavor}" for flag -flavor` };
  }
  const isNotFc = bools.has("isnotfc");
  const lifecycle = parseLifecycleConfig(
    { forwardAddress: values.get("forward-address"), reaper: values.get("reaper"), reclaimThreshold: values.get("reclaim-threshold") },
    env,
    isNotFc,
  );
  if ("error" in lifecycle) return { kind: "error", message: lifecycle.error };
  return {
    kind: "run",
    config: {
      port,
      host: values.get("host") ?? "0.0.0.0",
      isNotFc: bools.has("isnotfc"),
      cmd: values.get("cmd"),
      cgroupRoot: values.get("cgroup-root") ?? "/sys/fs/cgroup",
      noCgroups: bools.has("no-cgroups"),
      logLevel,
      flavor,
      vm: parseVmConfig(env, flavor),
      lifecycle,
    },
  };
}
