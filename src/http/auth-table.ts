/**
 * Who may call what (docs/protocol.md §5.1): the one table the access-token gate reads and
 * docs/auth.md shows. Every REST route the router has and every RPC service the daemon mounts must
 * have a row (src/auth-table.test.ts enumerates the router's own table and fails otherwise),
 * so a new route cannot skip the decision.
 *
 * Access, once /init has set a token (without one everything is open, as in Go envd):
 *   token     the gate refuses a missing or wrong `X-Access-Token` (401)
 *   open      the gate lets it through without a token
 *   own-check the gate lets it through; the handler checks the token itself (signed /files URLs,
 *             /init's token decision)
 *   absent    the route does not exist in this flavor
 */
import type { Flavor } from "../control/vm-config.ts";

export type Access = "token" | "open" | "own-check" | "absent";

export interface AuthRow {
  method: string;
  path: string;
  e2b: Access;
  wrenn: Access;
  why: string;
}

export const REST_AUTH: readonly AuthRow[] = [
  { method: "GET", path: "/health", e2b: "open", wrenn: "open", why: "hosts health-check before /init sets a token, and during pauses" },
  { method: "GET", path: "/files", e2b: "own-check", wrenn: "own-check", why: "the token, or a signed URL the SDK hands out (§5.2)" },
  { method: "POST", path: "/files", e2b: "own-check", wrenn: "own-check", why: "the token, or a signed URL (§5.2)" },
  { method: "PUT", path: "/files", e2b: "own-check", wrenn: "own-check", why: "POST's upload with the body as the file (today's Wrenn host): the same checks" },
  { method: "POST", path: "/files/compose", e2b: "token", wrenn: "token", why: "Go gates it; no signed form exists" },
  { method: "POST", path: "/init", e2b: "own-check", wrenn: "own-check", why: "the host sets and rotates the token here; the token decision of §6.3 refuses the rest" },
  { method: "GET", path: "/envs", e2b: "token", wrenn: "token", why: "the environment may hold secrets" },
  { method: "GET", path: "/metrics", e2b: "token", wrenn: "token", why: "as Go" },
  {
    method: "POST",
    path: "/snapshot/prepare",
    e2b: "token",
    wrenn: "open",
    why: "it disturbs every client (connections reset at the restore): Go envd has no such route, so E2B hosts never call it and it needs the token; the Wrenn host calls it without one, and only after it does can /health run the restore",
  },
  { method: "POST", path: "/freeze", e2b: "token", wrenn: "token", why: "freezes the user's processes" },
  { method: "POST", path: "/unfreeze", e2b: "token", wrenn: "token", why: "as /freeze" },
  { method: "POST", path: "/fsfreeze", e2b: "token", wrenn: "token", why: "freezes the root filesystem" },
  { method: "POST", path: "/fsthaw", e2b: "token", wrenn: "token", why: "as /fsfreeze" },
  { method: "POST", path: "/collapse", e2b: "token", wrenn: "token", why: "as Go (≥ 0.6.5): the host's call" },
  { method: "GET", path: "/tunnel", e2b: "token", wrenn: "token", why: "relays to any port inside the sandbox (WebSocket upgrade through the same gate)" },
  { method: "GET", path: "/exec", e2b: "token", wrenn: "token", why: "runs commands, as Process/Start (WebSocket upgrade through the same gate)" },
  { method: "GET", path: "/activity", e2b: "token", wrenn: "token", why: "as /metrics (the Wrenn host sets no token today)" },
  { method: "POST", path: "/memory/preload", e2b: "token", wrenn: "token", why: "starts a walk of all guest RAM" },
  { method: "GET", path: "/memory/preload", e2b: "token", wrenn: "token", why: "as POST" },
  { method: "POST", path: "/memory/preload/cancel", e2b: "token", wrenn: "token", why: "as POST" },
  { method: "POST", path: "/volumes/mount", e2b: "token", wrenn: "token", why: "formats and mounts block devices" },
  { method: "POST", path: "/volumes/unmount", e2b: "token", wrenn: "token", why: "unmounts filesystems" },
];

/** RPC services: every method behind the token (the gate runs before the Connect adapter). */
export const RPC_AUTH: readonly { service: string; e2b: Access; wrenn: Access; why: string }[] = [
  { service: "process.Process", e2b: "token", wrenn: "token", why: "runs commands as any user" },
  { service: "filesystem.Filesystem", e2b: "token", wrenn: "token", why: "reads and writes every file" },
  { service: "envd.Ports", e2b: "token", wrenn: "token", why: "shows what listens, with pids and commands" },
];

const BY_ROUTE = new Map(REST_AUTH.map((r) => [`${r.method} ${r.path}`, r]));

/** The access a request gets in `flavor`; routes without a row need the token. HEAD is GET. */
export function accessOf(flavor: Flavor, method: string, path: string): Access {
  const row = BY_ROUTE.get(`${method === "HEAD" ? "GET" : method} ${path}`);
  return row ? row[flavor] : "token";
}
