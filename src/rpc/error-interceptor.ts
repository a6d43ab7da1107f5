/**
 * Normalises errors at the RPC edge: a ConnectError passes unchanged; anything else (a bug) becomes
 * Internal with a generic message, and the original is logged. Clients never see stack traces.
 */
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { Code } from "../errors.ts";
import type { Logger } from "../log.ts";

export function errorInterceptor(log: Logger): Interceptor {
  const normalise = (err: unknown, method: string): unknown => {
    if (err instanceof ConnectError) return err;
    log.error("rpc failed", { method, err });
    return new ConnectError("internal error", Code.Internal);
  };
  return (next) => async (req) => {
    const method = req.method.name;
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
            throw normalise(err, method);
          }
        })(),
      };
    } catch (err) {
      throw normalise(err, method);
    }
  };
}
