/**
 * `/memory/preload` (Wrenn; envd-rs `src/http/memory.rs`, the loader in snapshot/memory-preload.ts):
 *   POST /memory/preload         → 200 status: starts the loader (idempotent), answers at once
 *   GET  /memory/preload         → 200 status
 *   POST /memory/preload/cancel  → 204
 * Status: `{"state","regions","pages","bytes","elapsed_sec","source","error"}`, `no-store`.
 */
import type { MemoryPreloader } from "../snapshot/memory-preload.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

const NO_STORE = { "Cache-Control": "no-store" };

export function postMemoryPreload(preloader: MemoryPreloader): RouteHandler {
  return ({ res }) => writeJson(res, 200, preloader.start(), NO_STORE);
}

export function getMemoryPreload(preloader: MemoryPreloader): RouteHandler {
  return ({ res }) => writeJson(res, 200, preloader.status(), NO_STORE);
}

export function postMemoryPreloadCancel(preloader: MemoryPreloader): RouteHandler {
  return ({ res }) => {
    preloader.cancel();
    res.statusCode = 204;
    res.setHeader("Cache-Control", "no-store");
    res.end();
  };
}
