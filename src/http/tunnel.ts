/**
 * GET /tunnel?host=&port= (docs/protocol.md §4.8): a WebSocket
 * relay to a TCP port inside the sandbox. `host` defaults to `localhost`; `port` must be 1–65535
 * (400 `port must be between 1 and 65535, got N`). The target is dialled before the upgrade, with a
 * 10 s timeout, so a refused or unreachable target is an ordinary 502 `failed to connect to
 * host:port: …`. Behind the access-token gate like every route that is not exempt.
 *
 * A plain GET (no `Upgrade: websocket`, or over HTTP/2) is validated the same way and answered
 * 426, so a client learns what is missing.
 */
import net from "node:net";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { relayTcp } from "../ws/tcp-relay.ts";
import type { WebSocket } from "../ws/websocket.ts";
import type { RouteHandler } from "./router.ts";
import type { UpgradeHandler } from "./upgrade-router.ts";

export const TUNNEL_DIAL_TIMEOUT_MS = 10_000;
const DEFAULT_HOST = "localhost";

export interface TunnelTarget {
  host: string;
  port: number;
}

/** `host` and `port` from the query, or InvalidArgument (400) with E2B's message. */
export function tunnelTarget(url: URL): TunnelTarget {
  const host = url.searchParams.get("host") || DEFAULT_HOST;
  const raw = url.searchParams.get("port");
  // As E2B's generated query binding: required, and an integer.
  if (raw === null || raw === "") throw new EnvdError(Code.InvalidArgument, "query argument port is required, but not found");
  if (!/^[+-]?\d+$/.test(raw)) throw new EnvdError(Code.InvalidArgument, `invalid format for parameter port: '${raw}' is not an integer`);
  const port = Number(raw);
  if (port < 1 || port > 65535) throw new EnvdError(Code.InvalidArgument, `port must be between 1 and 65535, got ${port}`);
  return { host, port };
}

/** `host:port` as Go's net.JoinHostPort writes it (IPv6 literals in brackets). */
export function joinHostPort({ host, port }: TunnelTarget): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Connects to the target, or BadGateway (502) when it refuses, is unreachable or too slow. */
export function dialTarget(target: TunnelTarget, signal: AbortSignal, timeoutMs = TUNNEL_DIAL_TIMEOUT_MS): Promise<net.Socket> {
  const where = joinHostPort(target);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true, autoSelectFamily: true });
    const fail = (detail: string, cause?: unknown) => {
      cleanup();
      socket.destroy();
      reject(new EnvdError(Code.Unavailable, `failed to connect to ${where}: ${detail}`, { cause, httpStatus: 502 }));
    };
    const timer = setTimeout(() => fail(`i/o timeout after ${timeoutMs / 1000} s`), timeoutMs);
    const onError = (err: Error) => fail(err.message, err);
    const onAbort = () => fail("the request was cancelled");
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("error", onError);
      signal.removeEventListener("abort", onAbort);
    };
    socket.once("error", onError);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => {
      cleanup();
      resolve(socket);
    });
  });
}

export function getTunnelUpgrade(log: Logger): UpgradeHandler {
  return async ({ url, signal, accept }) => {
    const target = tunnelTarget(url);
    const tcp = await dialTarget(target, signal);
    // Until the relay owns it, an error on the target must not go unhandled.
    tcp.on("error", () => {});
    let ws: WebSocket;
    try {
      ws = await accept();
    } catch (err) {
      tcp.destroy();
      throw err;
    }
    log.debug("tunnel open", { target: joinHostPort(target) });
    await relayTcp(ws, tcp, { log, signal });
    log.debug("tunnel closed", { target: joinHostPort(target) });
  };
}

/** The same route without an upgrade: validated, then 426. */
export function getTunnel(): RouteHandler {
  return ({ res, url }) => {
    tunnelTarget(url);
    res.setHeader("Upgrade", "websocket");
    throw new EnvdError(Code.FailedPrecondition, "GET /tunnel must be a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)", {
      httpStatus: 426,
    });
  };
}
