/**
 * POST /init: read and validate the whole body, then hand it to InitService (src/control/init-service.ts).
 * Every answer, errors included, carries `X-Envd-Version`, `Cache-Control: no-store`, and (as E2B
 * envd ≥ 0.9.0) `X-Envd-Defaults` (the default user and workdir in force after the request, and
 * whether the user is only the built-in fallback) and `X-Envd-Memory` (the memory protection on
 * the daemon's cgroup chain, control/memory-protection.ts). Success is 204 with no body.
 * Errors are JSON `{"code","message"}`: 400 bad body, 401 token (E2B's exact texts), 413 body over
 * INIT_MAX_BODY_BYTES, 503 when the caller left while another /init held the lock.
 */
import { Code, EnvdError } from "../errors.ts";
import { ENVD_VERSION } from "../version.ts";
import type { InitService } from "../control/init-service.ts";
import { parseInitBody } from "../control/init-request.ts";
import { type MemoryProtection, memoryHeaderValue } from "../control/memory-protection.ts";
import type { Session } from "../session.ts";
import type { AnyRequest, RouteHandler } from "./router.ts";

/** Generous for a CA chain and many variables; /init is called by the host only. */
export const INIT_MAX_BODY_BYTES = 4 << 20;

export function postInit(init: InitService, session: Session, memory: () => MemoryProtection): RouteHandler {
  return async ({ req, res, signal }) => {
    const receivedAt = process.hrtime.bigint();
    res.setHeader("X-Envd-Version", ENVD_VERSION);
    res.setHeader("Cache-Control", "no-store");
    try {
      const text = await readBody(req, INIT_MAX_BODY_BYTES, signal);
      const body = parseInitBody(text);
      await init.handle(body, { signal, receivedAt });
    } finally {
      // Set before the answer is written, on success and error alike (the router writes errors).
      res.setHeader("X-Envd-Defaults", defaultsHeaderValue(session));
      res.setHeader("X-Envd-Memory", memoryHeaderValue(memory()));
    }
    res.statusCode = 204;
    res.end();
  };
}

/** `{"user":…,"workdir":…,"fallback":…}`: `workdir` only when set, `fallback` always. */
export function defaultsHeaderValue(session: Session): string {
  return JSON.stringify({
    user: session.defaultUser,
    ...(session.defaultWorkdir !== undefined ? { workdir: session.defaultWorkdir } : {}),
    fallback: !session.defaultUserDelivered,
  });
}

/** The request body as UTF-8, refusing more than `maxBytes` (413) before reading it all. */
export async function readBody(req: AnyRequest, maxBytes: number, signal: AbortSignal): Promise<string> {
  const tooLarge = () =>
    new EnvdError(Code.ResourceExhausted, `request body is larger than ${maxBytes} bytes`, { httpStatus: 413 });
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer | string>) {
    const buf = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(buf);
    if (signal.aborted) throw new EnvdError(Code.Canceled, "the request was cancelled");
  }
  return Buffer.concat(chunks, size).toString("utf8");
}
