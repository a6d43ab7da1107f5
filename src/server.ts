/**
 * The one listener: HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the same port, telling them
 * apart by the client preface. Every request goes CORS → access-token gate → RPC adapter or REST
 * router. Connections are tracked so shutdown and snapshot/restore can close them.
 */
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { Http2Server, Http2ServerRequest, Http2ServerResponse } from "node:http2";
import net, { type AddressInfo, type Socket } from "node:net";
import type { Flavor } from "./control/vm-config.ts";
import type { Logger } from "./log.ts";
import { isAllowed, UNAUTHORIZED_MESSAGE } from "./http/access-gate.ts";
import { type Admission, createAdmission } from "./http/admission.ts";
import { applyCors } from "./http/cors.ts";
import { header } from "./http/headers.ts";
import { writeJsonError } from "./http/respond.ts";
import type { Router } from "./http/router.ts";
import type { UpgradeRouter } from "./http/upgrade-router.ts";
import type { Session } from "./session.ts";
import { refuseUpgrade } from "./ws/websocket.ts";

type NodeHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export interface ServerDeps {
  log: Logger;
  session: Session;
  router: Router;
  /** WebSocket routes (GET with `Upgrade: websocket` over HTTP/1.1). */
  upgrades?: UpgradeRouter;
  rpc: NodeHandler;
  rpcPrefixes: string[];
  shutdownSignal: AbortSignal;
  /** Decides which routes the access-token gate exempts (http/auth-table.ts). */
  flavor?: Flavor;
  /** When a request is handled (http/admission.ts); a test passes its own. */
  admission?: Admission;
  /** Idle HTTP/1.1 connections are closed after this long (default 640 s; tests pass less). */
  idleTimeoutMs?: number;
}

const IS_BUN = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** How long closing waits for open responses to finish before destroying their connections. */
const SHUTDOWN_DRAIN_MS = 1_000;
/** Idle time before the first TCP keepalive probe on an accepted connection. */
const TCP_KEEPALIVE_MS = 30_000;
/** An HTTP/1.1 connection that carries no request for this long is closed (Go envd's IdleTimeout). */
const IDLE_TIMEOUT_MS = 640_000;

export class EnvdServer implements AsyncDisposable {
  readonly #deps: ServerDeps;
  readonly #tcp: net.Server;
  readonly #h1: http.Server;
  /** The HTTP/2 server, created (and node:http2 imported) when the first preface arrives: most VMs only ever see HTTP/1.1. */
  #h2: Promise<Http2Server> | undefined;
  readonly #handler: (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;
  /** Every open connection: when it was accepted, and (HTTP/1.1) its requests so far and in flight. */
  readonly connections = new Map<Socket, { acceptedAt: number; h2: boolean; requests: number; inFlight: number }>();
  /**
   * HTTP/1.1 keep-alive for new responses. Off between a snapshot prepare and the restore, so no
   * connection stays open across the snapshot (snapshot/snapshot-lifecycle.ts).
   */
  keepAlive = true;
  #stopped: Promise<void> | undefined;
  /** Requests in a burst are handled one per event-loop turn once a turn's budget is spent (http/admission.ts). */
  readonly #admission: Admission;
  readonly #idleTimeoutMs: number;

  constructor(deps: ServerDeps) {
    this.#deps = deps;
    this.#admission = deps.admission ?? createAdmission();
    this.#idleTimeoutMs = deps.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    const handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) =>
      this.#handle(req, res);
    this.#handler = handler;
    this.#h1 = http.createServer(
      {
        // No `Keep-Alive: timeout=` header, as Go envd sends none: the SDK's fetch then closes a
        // connection it no longer uses after its own 4 s, where an advertised 640 s made it keep
        // every connection of a burst open for ten minutes. The server side's idle limit is ours
        // (#accept, #track): Bun does not enforce keepAliveTimeout on sockets handed over anyway.
        keepAliveTimeout: 0,
        requestTimeout: 0,
        headersTimeout: 60_000,
        // Only WebSocket upgrades to a WebSocket route leave the request path; any other
        // `Upgrade` (curl's h2c offer, a WebSocket to a REST path) is an ordinary request.
        shouldUpgradeCallback: (req) => this.#isUpgrade(req),
      },
      handler,
    );
    this.#h1.timeout = 0;
    this.#h1.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => this.#upgrade(req, socket, head));
    this.#tcp = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#tcp.once("error", reject);
      this.#tcp.listen(port, host, () => {
        this.#tcp.off("error", reject);
        resolve(this.#tcp.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting; open connections stay until `closeConnections`. Idempotent: resolves once the
   * listener is closed and every connection it accepted has gone.
   */
  stopAccepting(): Promise<void> {
    this.#stopped ??= new Promise((resolve) => this.#tcp.close(() => resolve()));
    return this.#stopped;
  }

  /**
   * Stops accepting, gives open responses up to `drainMs` to finish (closing connections as they
   * go idle), destroys the rest, and resolves once the listener is closed. Idempotent.
   */
  async close(drainMs = SHUTDOWN_DRAIN_MS): Promise<void> {
    const stopped = this.stopAccepting();
    const deadline = Date.now() + drainMs;
    while (this.connections.size > 0 && Date.now() < deadline) {
      this.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 10).unref());
    }
    this.closeConnections();
    await stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Destroys every connection accepted at or before `before` (all when omitted). */
  closeConnections(before = Number.POSITIVE_INFINITY): number {
    let n = 0;
    for (const [socket, info] of this.connections) {
      if (info.acceptedAt <= before) {
        socket.destroy();
        n++;
      }
    }
    return n;
  }

  /**
   * True while no request is being answered: every HTTP/1.1 connection has answered what it
   * carried, none was upgraded (a WebSocket counts as in flight until it closes), and no HTTP/2
   * connection is open (its streams are not counted, so it counts as busy).
   */
  get quiet(): boolean {
    for (const info of this.connections.values()) if (info.h2 || info.inFlight > 0) return false;
    return true;
  }

  /** Closes HTTP/1.1 keep-alive connections that are idle (answered every request they carried). */
  closeIdleConnections(): void {
    this.#h1.closeIdleConnections();
    // Node's own list is only kept for servers that listen(); ours gets its sockets handed over.
    for (const [socket, info] of this.connections) {
      if (!info.h2 && info.requests > 0 && info.inFlight === 0) socket.destroy();
    }
  }

  #accept(socket: Socket): void {
    const info = { acceptedAt: Date.now(), h2: false, requests: 0, inFlight: 0 };
    this.connections.set(socket, info);
    socket.once("close", () => this.connections.delete(socket));
    socket.on("error", () => {});
    // A peer that vanished (a VM restored elsewhere, a host that died) is detected by TCP
    // keepalive instead of leaving a zombie connection open forever.
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    // Closed once idle for idleTimeoutMs: silent from the start, or between two HTTP/1.1 requests
    // (#track stops the clock while a request is in flight; an upgrade stops it for good).
    socket.setTimeout(this.#idleTimeoutMs);
    socket.on("timeout", () => {
      if (!info.h2 && info.inFlight === 0) socket.destroy();
    });
    // Wait for enough bytes to tell an HTTP/2 preface from an HTTP/1.1 request line.
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (data: Buffer) => {
      chunks.push(data);
      length += data.length;
      const head = Buffer.concat(chunks, length);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && head.length < H2_PREFACE.length) return; // could still be HTTP/2: wait for more
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      info.h2 = isH2;
      if (isH2) {
        socket.setTimeout(0); // an HTTP/2 session keeps its own time
        // Node's http2 session reads the buffered preface from the socket itself, and resuming
        // would steal it; Bun's http2 reads through the stream and needs the resume.
        // node:http2 is imported on the first HTTP/2 connection: on Bun it costs ~1.5 ms of every
        // start, and the SDKs and the host speak HTTP/1.1.
        this.#h2 ??= import("node:http2").then((http2) => http2.createServer({}, this.#handler));
        this.#h2.then(
          (h2) => {
            if (socket.destroyed) return;
            h2.emit("connection", socket);
            if (IS_BUN) socket.resume();
          },
          (err: unknown) => {
            this.#h2 = undefined;
            this.#deps.log.error("cannot load HTTP/2", { err: String(err) });
            socket.destroy();
          },
        );
      } else {
        this.#h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  }

  #isUpgrade(req: IncomingMessage): boolean {
    const upgrades = this.#deps.upgrades;
    if (!upgrades || req.method !== "GET" || (req.headers.upgrade ?? "").toLowerCase() !== "websocket") return false;
    return upgrades.has(new URL(req.url ?? "/", "http://envd").pathname);
  }

  #upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const { log, session, upgrades, shutdownSignal } = this.#deps;
    const url = new URL(req.url ?? "/", "http://envd");
    const info = this.connections.get(socket);
    // An upgraded connection is never idle: only shutdown (or the relay ending) closes it.
    socket.setTimeout(0);
    if (info) {
      info.requests++;
      info.inFlight++;
    }
    if (!upgrades) return void socket.destroy();
    if (!isAllowed(session, "GET", url.pathname, header(req, "x-access-token"))) {
      refuseUpgrade(socket, 401, UNAUTHORIZED_MESSAGE);
      return;
    }
    upgrades.handle({ req, socket, head, url, signal: shutdownSignal }).catch((err: unknown) => {
      log.error("upgrade failed", { path: url.pathname, err });
      socket.destroy();
    });
  }

  /**
   * Counts an HTTP/1.1 request on its connection until its response is done (for
   * closeIdleConnections and `quiet`), and stops the connection's idle clock meanwhile.
   */
  #track(socket: Socket, res: ServerResponse | Http2ServerResponse): void {
    const info = this.connections.get(socket);
    if (!info) return;
    info.requests++;
    info.inFlight++;
    socket.setTimeout(0);
    let done = false;
    const finished = () => {
      if (done) return;
      done = true;
      info.inFlight--;
      if (info.inFlight === 0 && !socket.destroyed) socket.setTimeout(this.#idleTimeoutMs);
    };
    res.once("finish", finished);
    res.once("close", finished);
  }

  #handle(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
    const { session } = this.#deps;
    if (req.httpVersionMajor === 1) this.#track(req.socket as Socket, res);
    if (!this.keepAlive && req.httpVersionMajor === 1) res.setHeader("Connection", "close");
    if (applyCors(req, res)) return;
    const url = new URL(req.url ?? "/", "http://envd");
    const method = req.method ?? "GET";
    const token = header(req, "x-access-token");
    if (!isAllowed(session, method, url.pathname, token, this.#deps.flavor)) {
      writeJsonError(res, 401, UNAUTHORIZED_MESSAGE);
      return;
    }
    // The liveness probe never waits behind a burst: it is how the host tells a busy daemon from a dead one.
    if (method === "GET" && url.pathname === "/health") {
      this.#route(req, res, url);
      return;
    }
    // A request whose client went away while it waited for its turn is dropped: nobody is there
    // to answer, and a Start nobody will read must not run.
    let gone = false;
    const onGone = () => {
      gone = true;
    };
    res.once("close", onGone);
    this.#admission.admit(() => {
      res.off("close", onGone);
      if (!gone) this.#route(req, res, url);
    });
  }

  #route(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, url: URL): void {
    const { log, router, rpc, rpcPrefixes, shutdownSignal } = this.#deps;
    if (rpcPrefixes.some((p) => url.pathname.startsWith(p))) {
      endConnectCall(res);
      rpc(req, res);
      return;
    }
    const controller = new AbortController();
    const onClose = () => controller.abort();
    res.once("close", onClose);
    const signal = AbortSignal.any([controller.signal, shutdownSignal]);
    router.handle({ req, res, url, signal }).catch((err: unknown) => {
      log.error("request failed", { path: url.pathname, err });
      writeJsonError(res, 500, "internal error");
    });
  }
}

/**
 * connect-node (2.2.0) ends every response with `res.once("end", resolve); res.end()` and awaits
 * that promise, but a server response never emits "end" (Node's or Bun's, HTTP/1.1 or HTTP/2: they
 * emit "finish" and "close"), so every call's async handler stays pending for good. On Node that
 * costs nothing once the response is unreachable. On Bun an HTTP/1.1 connection keeps its last
 * request until the next one, and through the pending "end" listener the whole finished call
 * (its generators, closures and buffers): with the SDK's 200 idle keep-alive connections after
 * 200 commands, ~150,000 objects stayed alive (docs/benchmarks.md). Passing "finish" on as "end"
 * lets the call complete and be collected.
 */
export function endConnectCall(res: ServerResponse | Http2ServerResponse): void {
  res.once("finish", () => {
    if (res.listenerCount("end") > 0) res.emit("end");
  });
}
