/**
 * A route whose module is imported on its first request. /files needs multipart parsing, zlib,
 * the Content-Type table, tar and the atomic writer: on Bun zlib alone is ~6 MiB of resident memory once
 * imported, paid by every VM and snapshot whether or not it ever transfers a file. A failed
 * import answers 500 (through the router) and is tried again on the next request.
 */
import type { RouteHandler } from "./router.ts";
import type { UpgradeHandler } from "./upgrade-router.ts";

/** A handler (ctx) → result loaded once; a failed load is forgotten so the next call tries again. */
function lazy<C>(load: () => Promise<(ctx: C) => unknown>): (ctx: C) => Promise<void> {
  let handler: Promise<(ctx: C) => unknown> | undefined;
  return async (ctx) => {
    handler ??= load();
    let h: (ctx: C) => unknown;
    try {
      h = await handler;
    } catch (err) {
      handler = undefined;
      throw err;
    }
    await Promise.resolve(h(ctx));
  };
}

export function lazyRoute(load: () => Promise<RouteHandler>): RouteHandler {
  return lazy(load);
}

/** The same for a WebSocket upgrade route. */
export function lazyUpgrade(load: () => Promise<UpgradeHandler>): UpgradeHandler {
  return lazy(load);
}
