/**
 * Protocol mistakes on the RPC paths answered with a body that says what is wrong, before the
 * Connect adapter sees them (the adapter answers them with an empty body): an unknown method
 * (404), an HTTP method other than POST (405; no method is idempotent, so there is no Connect GET)
 * and a content type no codec reads (415). Connect clients get Connect error JSON
 * (`{"code","message"}`); gRPC and gRPC-Web clients a trailers-only answer with `grpc-status` and
 * `grpc-message`, as their libraries expect.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { Code } from "../errors.ts";

type NodeHandler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

const CODECS = /^application\/(json|proto|connect\+(json|proto)|grpc(\+(proto|json))?|grpc-web(\+(proto|json))?)\s*(;|$)/i;

/** The RPC paths (`/<package>.<Service>/<Method>`) of `services`. */
export function rpcPaths(services: readonly DescService[]): Set<string> {
  return new Set(services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)));
}

export function withProtocolErrors(handler: NodeHandler, services: readonly DescService[]): NodeHandler {
  const paths = rpcPaths(services);
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0] as string;
    const contentType = String(req.headers["content-type"] ?? "");
    if (!paths.has(path)) {
      return refuse(req, res, 404, Code.Unimplemented, `no such RPC method: ${path}`);
    }
    if (req.method !== "POST") {
      res.setHeader("Allow", "POST");
      return refuse(req, res, 405, Code.Unimplemented, `HTTP method ${req.method} is not supported for ${path}: RPCs take POST`);
    }
    if (!CODECS.test(contentType)) {
      return refuse(
        req,
        res,
        415,
        Code.InvalidArgument,
        `unsupported content type '${contentType}': use application/json or application/proto (Connect), application/connect+json|+proto (Connect streams), application/grpc or application/grpc-web`,
      );
    }
    handler(req, res);
  };
}

const GRPC_STATUS: Partial<Record<Code, number>> = { [Code.InvalidArgument]: 3, [Code.Unimplemented]: 12 };

function refuse(
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
  httpStatus: number,
  code: Code,
  message: string,
): void {
  const contentType = String(req.headers["content-type"] ?? "");
  // Whatever body the client sends is not needed; reading it keeps the connection usable.
  req.resume();
  if (/^application\/grpc/i.test(contentType)) {
    res.statusCode = 200;
    res.setHeader("content-type", contentType.split(";")[0] as string);
    res.setHeader("grpc-status", String(GRPC_STATUS[code] ?? 2));
    res.setHeader("grpc-message", encodeURIComponent(message));
    res.end();
    return;
  }
  const body = JSON.stringify({ code: CODE_NAMES[code], message });
  res.statusCode = httpStatus;
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", Buffer.byteLength(body));
  res.end(body);
}

const CODE_NAMES: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "invalid_argument",
  [Code.Unimplemented]: "unimplemented",
};
