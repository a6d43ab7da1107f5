/** Small response helpers shared by the REST routes: the one JSON error shape E2B clients parse. */
import type { ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import { httpStatusOf } from "../errors.ts";

export type AnyResponse = ServerResponse | Http2ServerResponse;

/**
 * `{"code": <status>, "message": "…"}` with nosniff, as E2B envd answers REST errors. After the
 * headers went out, the response is cut with an error instead: an HTTP/2 stream destroyed without
 * one is reset with NO_ERROR, which a client takes for a complete body.
 */
export function writeJsonError(res: AnyResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy(new Error(message));
    return;
  }
  const body = JSON.stringify({ code: status, message });
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(body);
}

export function writeError(res: AnyResponse, err: unknown): void {
  const status = httpStatusOf(err);
  const message = err instanceof ConnectError ? err.rawMessage : "internal error";
  writeJsonError(res, status, message);
}

export function writeJson(res: AnyResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader("Content-Type", "application/json");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(body);
}
