/**
 * Block volumes (Wrenn; envd-rs `src/http/volumes.rs`, the rules in control/block-volumes.ts):
 *   POST /volumes/mount   {"serial","mount_path"} → 204; 400 bad body, 404 no such disk,
 *                                                   409 refused (data without a filesystem, path in
 *                                                   use by another device), 500 blkid/mkfs/mount
 *   POST /volumes/unmount {"mount_path"}          → 204 always (sync + umount, best effort); 400 bad body
 * Errors are JSON `{"code","message"}`; success carries `Cache-Control: no-store`.
 */
import { Code, EnvdError } from "../errors.ts";
import { type BlockVolumes, parseMountRequest, parseUnmountRequest } from "../control/block-volumes.ts";
import { readBody } from "./init.ts";
import type { RouteHandler } from "./router.ts";

const MAX_BODY_BYTES = 64 << 10;

async function readJson(ctx: Parameters<RouteHandler>[0]): Promise<unknown> {
  const text = await readBody(ctx.req, MAX_BODY_BYTES, ctx.signal);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new EnvdError(Code.InvalidArgument, `invalid JSON body: ${(err as Error).message}`);
  }
}

function noContent(res: Parameters<RouteHandler>[0]["res"]): void {
  res.statusCode = 204;
  res.setHeader("Cache-Control", "no-store");
  res.end();
}

export function postVolumesMount(volumes: BlockVolumes): RouteHandler {
  return async (ctx) => {
    const req = parseMountRequest(await readJson(ctx));
    await volumes.mount(req, ctx.signal);
    noContent(ctx.res);
  };
}

export function postVolumesUnmount(volumes: BlockVolumes): RouteHandler {
  return async (ctx) => {
    const mountPath = parseUnmountRequest(await readJson(ctx));
    await volumes.unmount(mountPath, ctx.signal);
    noContent(ctx.res);
  };
}
