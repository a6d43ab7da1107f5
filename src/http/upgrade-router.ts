/**
 * The WebSocket routes: HTTP/1.1 `GET` requests with `Upgrade: websocket` on a path listed here
 * are handed over by server.ts (node:http's `upgrade` event) instead of reaching the REST router.
 * The same access-token gate applies; anything a handler throws before it accepts the WebSocket
 * becomes the usual `{"code","message"}` JSON answer, and the connection closes.
 *
 * The same paths are also REST routes (http/routes), which answer a request that is not an
 * upgrade (or arrives over HTTP/2) with 426 after the same validation.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { ConnectError } from "@connectrpc/connect";
import { httpStatusOf } from "../errors.ts";
import type { Logger } from "../log.ts";
import { acceptWebSocket, refuseUpgrade, type WebSocket } from "../ws/websocket.ts";

export interface UpgradeRequest {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  url: URL;
  /** Aborted when the daemon shuts down (the WebSocket itself tells when the client leaves). */
  signal: AbortSignal;
}

export interface UpgradeContext extends UpgradeRequest {
  /** Completes the handshake; before it, a throw is answered as JSON, after it the handler owns the WebSocket. */
  accept(): Promise<WebSocket>;
}

export type UpgradeHandler = (ctx: UpgradeContext) => void | Promise<void>;

export class UpgradeRouter {
  readonly #routes = new Map<string, UpgradeHandler>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  add(path: string, handler: UpgradeHandler): this {
    this.#routes.set(path, handler);
    return this;
  }

  has(path: string): boolean {
    return this.#routes.has(path);
  }

  /** Every WebSocket path (the route-table test enumerates them). */
  paths(): string[] {
    return [...this.#routes.keys()];
  }

  async handle(request: UpgradeRequest): Promise<void> {
    const handler = this.#routes.get(request.url.pathname);
    if (!handler) return refuseUpgrade(request.socket, 404, "not found");
    let accepted = false;
    const ctx: UpgradeContext = {
      ...request,
      accept: () => {
        accepted = true;
        return acceptWebSocket(request.req, request.socket, request.head);
      },
    };
    try {
      // A handler may finish synchronously (refusals) or return a promise.
      await Promise.resolve(handler(ctx));
    } catch (err) {
      if (err instanceof ConnectError) this.#log.debug("upgrade refused", { path: ctx.url.pathname, err: err.rawMessage });
      else this.#log.error("upgrade failed", { path: ctx.url.pathname, err });
      const message = err instanceof ConnectError ? err.rawMessage : "internal error";
      // After the handshake the socket belongs to the WebSocket: then there is nobody to answer.
      if (accepted) ctx.socket.destroy();
      else refuseUpgrade(ctx.socket, httpStatusOf(err), message);
    }
  }
}
