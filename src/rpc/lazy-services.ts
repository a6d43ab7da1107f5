/**
 * The Connect services, each built on its first request instead of at start.
 *
 * A service needs its protobuf descriptors (decoding the embedded file descriptors boots
 * descriptor.proto itself), Connect's router and its own implementation: ~10 MiB of resident
 * memory and a third of the start time on Bun (docs/benchmarks.md). Most sandboxes run commands
 * and never watch a port; every VM pays for what is loaded, once per VM and in every snapshot.
 * So each service prefix gets a handler that loads its modules on the first request, builds a
 * connect-node adapter for that one service, and hands it this and every later request; requests
 * arriving during the load wait for it. The request body is not touched before the adapter
 * reads it, so nothing is lost while loading.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

export type NodeHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

export interface LazyService {
  /** Path prefix of the service, e.g. "/process.Process/". */
  prefix: string;
  /** Builds the service's handler (imports its modules); called once, on its first request. */
  load(): Promise<NodeHandler>;
}

export interface LazyRpc {
  prefixes: string[];
  /** Serves a request whose path starts with one of `prefixes`. */
  handle: NodeHandler;
  /** Prefixes whose service has been built (for tests and logs). */
  loaded(): string[];
}

/**
 * Routes each request to its service, loading it first if need be. A service that fails to load
 * answers 500 with a Connect error body (`internal`) and is tried again on the next request (the
 * cause could be passing: ENOMEM, EMFILE).
 */
export function lazyServices(services: LazyService[], onLoadError: (prefix: string, err: unknown) => void): LazyRpc {
  const handlers = new Map<string, Promise<NodeHandler>>();
  const ready = new Map<string, NodeHandler>();
  return {
    prefixes: services.map((s) => s.prefix),
    loaded: () => [...ready.keys()],
    handle(req, res) {
      const path = req.url ?? "/";
      const service = services.find((s) => path.startsWith(s.prefix));
      if (!service) throw new Error(`no RPC service for ${path}`);
      const built = ready.get(service.prefix);
      if (built) return built(req, res);
      let pending = handlers.get(service.prefix);
      if (!pending) {
        pending = service.load().then((h) => {
          ready.set(service.prefix, h);
          return h;
        });
        pending.catch(() => handlers.delete(service.prefix));
        handlers.set(service.prefix, pending);
      }
      pending.then(
        (h) => h(req, res),
        (err: unknown) => {
          onLoadError(service.prefix, err);
          if (res.headersSent) return void res.destroy();
          res.statusCode = 500;
          res.setHeader("Content-Type", "application/json");
          res.end(JSON.stringify({ code: "internal", message: "the service could not be loaded" }));
        },
      );
    },
  };
}
