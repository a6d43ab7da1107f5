/**
 * The REST side: a route table keyed by method and path, plus the one place where errors become
 * `{"code","message"}` JSON. Unknown path → 404, known path with the wrong method → 405.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import { type AnyResponse, writeError, writeJsonError } from "./respond.ts";

export type AnyRequest = IncomingMessage | Http2ServerRequest;

export interface RouteContext {
  req: AnyRequest;
  res: AnyResponse;
  url: URL;
  /** Aborted when the client goes away or the daemon shuts down. */
  signal: AbortSignal;
}

export type RouteHandler = (ctx: RouteContext) => void | Promise<void>;

export class Router {
  readonly #routes = new Map<string, Map<string, RouteHandler>>();
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  add(method: string, path: string, handler: RouteHandler): this {
    const byMethod = this.#routes.get(path) ?? new Map<string, RouteHandler>();
    byMethod.set(method, handler);
    this.#routes.set(path, byMethod);
    return this;
  }

  /** Every [method, path] the table holds, in the order added (HEAD is answered by GET). */
  routes(): [method: string, path: string][] {
    return [...this.#routes].flatMap(([path, byMethod]) => [...byMethod.keys()].map((m): [string, string] => [m, path]));
  }

  has(path: string): boolean {
    return this.#routes.has(path);
  }

  async handle(ctx: RouteContext): Promise<void> {
    const byMethod = this.#routes.get(ctx.url.pathname);
    if (!byMethod) return writeJsonError(ctx.res, 404, "not found");
    const handler = byMethod.get(ctx.req.method ?? "GET") ?? (ctx.req.method === "HEAD" ? byMethod.get("GET") : undefined);
    if (!handler) {
      ctx.res.setHeader("Allow", [...byMethod.keys()].join(", "));
      return writeJsonError(ctx.res, 405, "method not allowed");
    }
    try {
      await handler(ctx);
    } catch (err) {
      if (!(err instanceof ConnectError)) this.#log.error("route failed", { path: ctx.url.pathname, err });
      else this.#log.debug("route error", { path: ctx.url.pathname, err: err.rawMessage });
      writeError(ctx.res, err);
    }
  }
}
