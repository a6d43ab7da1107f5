/**
 * `envd ports` (Wrenn; envd-rs `src/cmd/ports.rs`): a one-shot command, not the daemon. Lists the
 * listening TCP ports a user of the sandbox can reach from outside, with the URL the host's proxy
 * serves each at: `https://{port}-{sandbox id}.{domain}`.
 *
 * - Reachable = LISTEN on a wildcard address (0.0.0.0, ::) or on loopback (the port forwarder
 *   makes those reachable); envd's own port (49983) is left out. Sorted, each port once.
 * - Sandbox id: `WRENN_SANDBOX_ID`, else `<run dir>/.WRENN_SANDBOX_ID`; unknown → `<sandbox-id>`.
 * - Domain: `--domain`, else `WRENN_PROXY_DOMAIN`, else `<run dir>/.WRENN_PROXY_DOMAIN`, else
 *   wrenn.dev.
 * - Refuses (exit 1) outside a sandbox: neither `WRENN_SANDBOX=true` nor `<run dir>/.WRENN_SANDBOX`
 *   (the daemon writes that marker at start).
 *
 * The run dir is /run/wrenn (`ENVD_RUN_DIR` overrides it, as for the daemon). main.ts dispatches
 * here before anything of the daemon is loaded.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isLoopback, isWildcard, parseProcNetTcp, TCP_LISTEN, type TcpSocket } from "./proc-net-tcp.ts";

export const DEFAULT_PROXY_DOMAIN = "wrenn.dev";
/** envd's own port (config.ts DEFAULT_PORT), left out of the list. */
export const ENVD_PORT = 49983;

export const PORTS_USAGE = `Usage: envd ports [--domain DOMAIN] [--json]
  List the listening ports reachable from outside this sandbox and the URL each is served at.
  --domain DOMAIN  proxy domain for the URLs (default: the one the host set, else ${DEFAULT_PROXY_DOMAIN})
  --json           print [{"port","url"}] as JSON instead of a table`;

export interface PortsIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** /proc/net/tcp and tcp6 (tests hand in their own). */
  readTcp?: () => TcpSocket[];
}

export interface PortEntry {
  port: number;
  url: string;
}

/** Runs the command; resolves with the exit code (0 ok, 1 refused or failed, 2 usage). */
export function runPortsCommand(argv: readonly string[], env: NodeJS.ProcessEnv, io: PortsIo): number {
  let domain: string | undefined;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [name, inline] = splitFlag(arg);
    if (name === "json" && inline === undefined) json = true;
    else if (name === "help" || name === "h") {
      io.stdout(`${PORTS_USAGE}\n`);
      return 0;
    } else if (name === "domain") {
      const value = inline ?? argv[++i];
      if (value === undefined) return usageError(io, "flag needs an argument: --domain");
      domain = value;
    } else return usageError(io, `unknown argument: ${arg}`);
  }

  const runDir = env.ENVD_RUN_DIR || "/run/wrenn";
  if (env.WRENN_SANDBOX !== "true" && !existsSync(join(runDir, ".WRENN_SANDBOX"))) {
    io.stderr("envd ports: not running inside a wrenn sandbox\n");
    return 1;
  }
  const sandboxId = identity(env.WRENN_SANDBOX_ID, join(runDir, ".WRENN_SANDBOX_ID"));
  const proxyDomain = (domain?.trim() || undefined) ?? identity(env.WRENN_PROXY_DOMAIN, join(runDir, ".WRENN_PROXY_DOMAIN")) ?? DEFAULT_PROXY_DOMAIN;

  let sockets: TcpSocket[];
  try {
    sockets = (io.readTcp ?? readTcpSockets)();
  } catch (err) {
    io.stderr(`envd ports: cannot read the listening sockets: ${(err as Error).message}\n`);
    return 1;
  }
  const entries: PortEntry[] = reachableListeningPorts(sockets, ENVD_PORT).map((port) => ({
    port,
    url: portUrl(port, sandboxId, proxyDomain),
  }));
  if (json) {
    io.stdout(`${JSON.stringify(entries, null, 2)}\n`);
  } else if (entries.length === 0) {
    io.stdout("No open ports.\n");
  } else {
    io.stdout(`${"PORT".padEnd(6)} URL\n${entries.map((e) => `${String(e.port).padEnd(6)} ${e.url}\n`).join("")}`);
  }
  return 0;
}

/** Ports in LISTEN on a wildcard or loopback address, except `exclude`; sorted, unique. */
export function reachableListeningPorts(sockets: readonly TcpSocket[], exclude: number): number[] {
  const ports = new Set<number>();
  for (const s of sockets) {
    if (s.state !== TCP_LISTEN || s.port === exclude) continue;
    if (isWildcard(s.address) || isLoopback(s.address)) ports.add(s.port);
  }
  return [...ports].sort((a, b) => a - b);
}

export function portUrl(port: number, sandboxId: string | undefined, domain: string): string {
  return `https://${port}-${sandboxId ?? "<sandbox-id>"}.${domain}`;
}

function identity(fromEnv: string | undefined, file: string): string | undefined {
  const v = fromEnv?.trim();
  if (v) return v;
  try {
    return readFileSync(file, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

function readTcpSockets(): TcpSocket[] {
  const out: TcpSocket[] = [];
  for (const [path, family] of [["/proc/net/tcp", 4], ["/proc/net/tcp6", 6]] as const) {
    try {
      out.push(...parseProcNetTcp(readFileSync(path, "utf8"), family));
    } catch (err) {
      // No IPv6 in the guest kernel: tcp6 is missing, which is fine; tcp missing is not.
      if (family === 4) throw err;
    }
  }
  return out;
}

/** `--x`, `-x`, `--x=v` → ["x", "v" | undefined]; anything else → ["", undefined]. */
function splitFlag(arg: string): [string, string | undefined] {
  if (!arg.startsWith("-") || arg === "-" || arg === "--") return ["", undefined];
  const body = arg.replace(/^--?/, "");
  const eq = body.indexOf("=");
  return eq === -1 ? [body, undefined] : [body.slice(0, eq), body.slice(eq + 1)];
}

function usageError(io: PortsIo, message: string): number {
  io.stderr(`envd ports: ${message}\n${PORTS_USAGE}\n`);
  return 2;
}
