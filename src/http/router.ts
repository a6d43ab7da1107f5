/**
 * The REST side: a route table keyed by method and path, plus the one place where errors become
 * `{"code","message"}` JSON. Unknown path → 404, known path with the wrong method → 405.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import { type AnyResponse, writeError, writeJsonError } from "./respond.ts";

/** Codes that mean the daemon failed, not the client: logged at error level with the cause chain. */
const SERVER_FAULTS = new Set<Code>([Code.Internal, Code.Unknown, Code.DataLoss]);

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
    } catch (thrown) {
      // Work stopped by the shutdown answers with the shutdown's own reason (503), whatever the
      // step that noticed it threw.
      const reason: unknown = ctx.signal.aborted ? ctx.signal.reason : undefined;
      const err = reason instanceof ConnectError && reason.code === Code.Unavailable ? reason : thrown;
      const path = ctx.url.pathname;
      if (!(err instanceof ConnectError)) this.#log.error("route failed", { path, err });
      else if (SERVER_FAULTS.has(err.code)) this.#log.error("route failed", { path, code: Code[err.code], err });
      else if (err === reason) this.#log.info("request ended by the shutdown", { path, method: ctx.req.method });
      else this.#log.debug("route error", { path, code: Code[err.code], err: err.rawMessage });
      writeError(ctx.res, err);
    }
  }
}
