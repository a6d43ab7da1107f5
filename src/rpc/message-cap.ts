/**
 * The largest Connect response message we send. Today's Wrenn host reads every Connect message
 * through `connect.WithReadMaxBytes(16 MiB)` (wrennhq/wrenn `pkg/envdclient/limits.go`): a larger
 * one fails on its side with an error that names nothing. So a response that would be larger is
 * refused here with `resource_exhausted` naming the limit, and nothing is sent half (ListDir keeps
 * E2B envd's all-or-nothing semantics). Measured in the codec the client asked for.
 */
import { type DescMessage, type MessageShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { Code, EnvdError } from "../errors.ts";

export const MAX_RESPONSE_MESSAGE_BYTES = 16 << 20;

/** JSON is never more than this many times the binary size for our messages (keys, escapes). */
const JSON_OVER_BINARY_BOUND = 8;

/** The encoded size of `msg` in the request's codec (exact where it could matter). */
export function encodedBytes<D extends DescMessage>(schema: D, msg: MessageShape<D>, ctx: HandlerContext, limit: number): number {
  const binary = toBinary(schema, msg).byteLength;
  const contentType = ctx.requestHeader.get("content-type") ?? "";
  if (!/json/i.test(contentType) || binary * JSON_OVER_BINARY_BOUND <= limit) return binary;
  return Buffer.byteLength(toJsonString(schema, msg));
}

/** Throws ResourceExhausted when `msg` would encode to more than `limit` bytes. */
export function checkResponseSize<D extends DescMessage>(
  schema: D,
  msg: MessageShape<D>,
  ctx: HandlerContext,
  what: string,
  limit = MAX_RESPONSE_MESSAGE_BYTES,
): MessageShape<D> {
  const bytes = encodedBytes(schema, msg, ctx, limit);
  if (bytes > limit) {
    throw new EnvdError(
      Code.ResourceExhausted,
      `${what} would be a ${bytes}-byte response, over the ${limit}-byte (${Math.round(limit / 1048576)} MiB) limit of a Connect message; list with a smaller depth`,
    );
  }
  return msg;
}
