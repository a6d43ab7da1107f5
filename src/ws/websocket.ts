/**
 * The one WebSocket server (the `ws` package: Node runs it as published; Bun resolves `ws` to its
 * own native-backed implementation of the same API). It is attached to nothing: the daemon's one
 * listener hands HTTP/1.1 upgrade requests over (server.ts), and a route accepts or refuses them.
 *
 * Shared by GET /tunnel and GET /exec: accepting, refusing before the upgrade with the JSON error
 * shape of every REST route, the keepalive (ping every 30 s, 5 s for the pong, then the
 * connection is dropped), and send-side backpressure.
 */
import type { IncomingMessage } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket, WebSocketServer } from "ws";

export type { WebSocket };

/** Largest message accepted from a client; a bigger one closes the connection with 1009. */
export const WS_MAX_MESSAGE_BYTES = 16 << 20;
export const WS_PING_INTERVAL_MS = 30_000;
export const WS_PONG_TIMEOUT_MS = 5_000;
/** Bytes queued for a client above which the producer is paused, and under which it resumes. */
export const WS_SEND_HIGH_WATER_BYTES = 1 << 20;
export const WS_SEND_LOW_WATER_BYTES = 256 << 10;

let server: Promise<WebSocketServer> | undefined;

/**
 * The `ws` library is imported on the first upgrade: it pulls in zlib, crypto and tls, ~5 MiB
 * resident on Bun for a daemon that may never see a WebSocket (docs/benchmarks.md, idle RSS).
 */
function wss(): Promise<WebSocketServer> {
  server ??= import("ws").then(
    ({ WebSocketServer }) =>
      new WebSocketServer({
        noServer: true,
        clientTracking: false,
        perMessageDeflate: false,
        maxPayload: WS_MAX_MESSAGE_BYTES,
      }),
  );
  server.catch(() => {
    server = undefined; // tried again on the next upgrade
  });
  return server;
}

/** True for an HTTP/1.1 `GET` asking for a WebSocket (the only upgrade the daemon takes). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return req.method === "GET" && (req.headers.upgrade ?? "").toLowerCase() === "websocket";
}

/** Completes the handshake on a socket handed over by the HTTP/1.1 server. */
export async function acceptWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<WebSocket> {
  const ws = await wss();
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return reject(new Error("the connection closed during the WebSocket handshake"));
    const onClose = () => reject(new Error("the connection closed during the WebSocket handshake"));
    socket.once("close", onClose);
    ws.handleUpgrade(req, socket, head, (client) => {
      socket.off("close", onClose);
      resolve(client);
    });
  });
}

/**
 * Refuses an upgrade with an ordinary HTTP answer, `{"code","message"}` as every REST error, and
 * closes the connection (it was going to be taken over by the WebSocket).
 */
export function refuseUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ code: status, message });
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`,
    "Content-Type: application/json; charset=utf-8",
    "X-Content-Type-Options: nosniff",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join("\r\n")}\r\n\r\n${body}`);
}

/**
 * Pings every `intervalMs`; a pong missing after `timeoutMs` drops the connection (a peer that
 * vanished, or a proxy that stopped forwarding). Stops by itself when the socket closes.
 */
export function keepAlive(ws: WebSocket, intervalMs = WS_PING_INTERVAL_MS, timeoutMs = WS_PONG_TIMEOUT_MS): Disposable {
  let deadline: NodeJS.Timeout | undefined;
  const onPong = () => {
    if (deadline) clearTimeout(deadline);
    deadline = undefined;
  };
  const ticker = setInterval(() => {
    if (ws.readyState !== ws.OPEN || deadline) return;
    deadline = setTimeout(() => ws.terminate(), timeoutMs);
    deadline.unref();
    ws.ping();
  }, intervalMs);
  ticker.unref();
  const stop = () => {
    clearInterval(ticker);
    if (deadline) clearTimeout(deadline);
    ws.off("pong", onPong);
  };
  ws.on("pong", onPong);
  ws.once("close", stop);
  return { [Symbol.dispose]: stop };
}

/**
 * Counts the bytes handed to `send` until the runtime reports them written, so a producer can
 * stop above a high-water mark and go on once under the low one. `bufferedAmount` alone is not
 * enough: the npm `ws` counts only what its socket holds, and a send callback is the one signal
 * both implementations give when bytes are really gone.
 */
export class SendWindow {
  readonly #ws: WebSocket;
  readonly #high: number;
  readonly #low: number;
  #inFlight = 0;
  #waiters: (() => void)[] = [];

  constructor(ws: WebSocket, high = WS_SEND_HIGH_WATER_BYTES, low = WS_SEND_LOW_WATER_BYTES) {
    this.#ws = ws;
    this.#high = high;
    this.#low = low;
    ws.once("close", () => this.#wake());
  }

  /** Bytes sent and not yet written out (ours plus what the runtime reports buffered). */
  get pending(): number {
    return Math.max(this.#inFlight, this.#ws.bufferedAmount);
  }

  /** True when the producer should wait (`drained()`) before sending more. */
  get full(): boolean {
    return this.pending >= this.#high;
  }

  send(data: Uint8Array | string, binary: boolean): void {
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
    this.#inFlight += size;
    this.#ws.send(data, { binary }, () => {
      this.#inFlight -= size;
      if (this.pending <= this.#low) this.#wake();
      else this.#poll();
    });
  }

  /** Resolves once pending bytes are under the low-water mark, or the socket closed. */
  drained(): Promise<void> {
    if (this.pending <= this.#low || this.#ws.readyState !== this.#ws.OPEN) return Promise.resolve();
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#poll();
    });
  }

  #pollTimer: NodeJS.Timeout | undefined;

  /** Every send callback has fired but the runtime still holds bytes: look again shortly. */
  #poll(): void {
    if (this.#pollTimer || this.#waiters.length === 0 || this.#inFlight > this.#low) return;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined;
      if (this.pending <= this.#low || this.#ws.readyState !== this.#ws.OPEN) this.#wake();
      else this.#poll();
    }, 5);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
