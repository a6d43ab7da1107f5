/**
 * The RPC edge for errors, in two pieces that connectNodeAdapter takes as options:
 *
 * - `errorInterceptor`: a ConnectError passes unchanged; anything else (a bug) becomes Internal
 *   with a generic message and the original as its cause. Clients never see stack traces.
 * - `rpcErrorGate` (the adapter's `requestGate`): watches each call's context and, when the call
 *   ends with an error, (1) turns the library's "parse binary" failures, which connect-es labels
 *   Internal, into InvalidArgument as connect-go answers them (a malformed protobuf body is the
 *   client's mistake, in every codec: Connect, gRPC, gRPC-Web); (2) logs every Internal, Unknown
 *   and DataLoss answer once, at error level, with the cause chain (errno, syscall). Both happen
 *   in the abort listener because connect-es aborts the context with the final error right before
 *   it writes the status, also for errors raised before any interceptor runs (body parsing).
 */
import { ConnectError, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { Code } from "../errors.ts";
import type { Logger } from "../log.ts";

export function errorInterceptor(): Interceptor {
  const normalise = (err: unknown): unknown =>
    err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const inner = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* inner;
          } catch (err) {
            throw normalise(err);
          }
        })(),
      };
    } catch (err) {
      throw normalise(err);
    }
  };
}

/** Codes that mean the daemon failed, not the client: logged at error level. */
const SERVER_FAULTS = new Set<Code>([Code.Internal, Code.Unknown, Code.DataLoss]);

export function rpcErrorGate(log: Logger): (ctx: HandlerContext) => void {
  return (ctx) => {
    ctx.signal.addEventListener(
      "abort",
      () => {
        const err: unknown = ctx.signal.reason;
        if (!(err instanceof ConnectError)) return;
        reclassify(err);
        if (SERVER_FAULTS.has(err.code)) {
          log.error("rpc failed", { method: `${ctx.service.typeName}/${ctx.method.name}`, code: Code[err.code], err });
        }
      },
      { once: true },
    );
  };
}

/** A body the codec cannot decode is InvalidArgument (connect-es says Internal; connect-go and E2B say InvalidArgument). */
export function reclassify(err: ConnectError): void {
  if (err.code === Code.Internal && /^(parse binary|cannot decode message)/.test(err.rawMessage)) {
    (err as { code: Code }).code = Code.InvalidArgument;
  }
}
