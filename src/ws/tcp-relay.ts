/**
 * The GET /tunnel relay: raw TCP bytes ⇄ binary WebSocket messages, no framing of our own.
 *
 * Backpressure both ways, so neither side can make the daemon buffer without bound:
 *  - target → client: above the send window's high-water mark the TCP socket is paused (the
 *    target's writes then block in its kernel buffer) and resumed under the low one;
 *  - client → target: when the TCP write buffer is full, the WebSocket stops being read (the
 *    client's sends then back up) until the socket drains.
 * Either side ending ends both: the target closing (after everything it sent reached the client)
 * closes the WebSocket with 1000; an error on the target closes it with 1011; the client going
 * away ends the TCP connection (after what it sent was written) or resets it on error.
 */
import type { Socket } from "node:net";
import type { Logger } from "../log.ts";
import { keepAlive, SendWindow, type WebSocket } from "./websocket.ts";

export interface RelayOptions {
  log: Logger;
  /** Closes the tunnel with 1001 (daemon shutting down). */
  signal?: AbortSignal;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
}

/** Relays until either side ends; resolves when both are closed. */
export function relayTcp(ws: WebSocket, tcp: Socket, opts: RelayOptions): Promise<void> {
  const { log } = opts;
  const window = new SendWindow(ws);
  // Stops by itself when the WebSocket closes.
  keepAlive(ws, opts.pingIntervalMs, opts.pongTimeoutMs);

  return new Promise<void>((resolve) => {
    let tcpClosed = false;
    let wsClosed = false;
    const maybeDone = () => {
      if (tcpClosed && wsClosed) {
        opts.signal?.removeEventListener("abort", onShutdown);
        resolve();
      }
    };

    // target → client
    tcp.on("data", (chunk: Buffer) => {
      window.send(chunk, true);
      if (window.full && !tcp.isPaused()) {
        tcp.pause();
        void window.drained().then(() => {
          if (!tcp.destroyed) tcp.resume();
        });
      }
    });
    tcp.on("end", () => {
      // Everything the target sent is queued on the WebSocket; close after it is written.
      void window.drained().then(() => ws.close(1000, "target closed the connection"));
    });
    tcp.on("error", (err) => {
      log.debug("tunnel target error", { err: err.message });
      if (ws.readyState === ws.OPEN) ws.close(1011, "target connection failed");
    });
    tcp.on("close", () => {
      tcpClosed = true;
      if (ws.readyState === ws.OPEN) void window.drained().then(() => ws.close(1000, "target closed the connection"));
      maybeDone();
    });

    // client → target
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      const buf = toBuffer(data);
      if (!isBinary && buf.byteLength === 0) return;
      if (tcp.destroyed || tcp.writableEnded) return;
      if (!tcp.write(buf)) {
        ws.pause();
        tcp.once("drain", () => ws.resume());
      }
    });
    ws.on("error", (err) => log.debug("tunnel client error", { err: err.message }));
    ws.on("close", (code) => {
      wsClosed = true;
      if (code === 1000 || code === 1005) tcp.end();
      else tcp.destroy();
      // A target that never answers the FIN would keep the socket half-open: give it a moment.
      setTimeout(() => tcp.destroy(), 5_000).unref();
      maybeDone();
    });

    const onShutdown = () => {
      if (ws.readyState === ws.OPEN) ws.close(1001, "envd is shutting down");
      tcp.destroy();
    };
    if (opts.signal?.aborted) onShutdown();
    else opts.signal?.addEventListener("abort", onShutdown, { once: true });
  });
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
