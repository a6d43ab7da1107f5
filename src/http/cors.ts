/** CORS as E2B envd answers it: any origin, any requested headers, preflight before auth. */
import type { AnyRequest } from "./router.ts";
import type { AnyResponse } from "./respond.ts";

const EXPOSED = [
  "Grpc-Status",
  "Grpc-Message",
  "Grpc-Status-Details-Bin",
  "Location",
  "Cache-Control",
  "X-Content-Type-Options",
  "Connect-Content-Encoding",
  "Connect-Protocol-Version",
  "Grpc-Encoding",
  "Content-Disposition",
  "Content-Length",
  "Content-Encoding",
  "Content-Range",
  "Accept-Ranges",
  "ETag",
  "Last-Modified",
  "X-Envd-Version",
].join(", ");

/** Sets the CORS headers; answers a preflight itself and returns true when it did. */
export function applyCors(req: AnyRequest, res: AnyResponse): boolean {
  const origin = req.headers.origin;
  res.setHeader("Access-Control-Allow-Origin", "*");
  if (origin) res.setHeader("Vary", "Origin");
  const preflightMethod = req.headers["access-control-request-method"];
  if (req.method === "OPTIONS" && preflightMethod) {
    res.setHeader("Access-Control-Allow-Methods", "HEAD, GET, POST, PUT, PATCH, DELETE");
    const requested = req.headers["access-control-request-headers"];
    res.setHeader("Access-Control-Allow-Headers", typeof requested === "string" && requested ? requested : "*");
    res.setHeader("Access-Control-Max-Age", "7200");
    res.statusCode = 204;
    res.end();
    return true;
  }
  res.setHeader("Access-Control-Expose-Headers", EXPOSED);
  return false;
}
