/** Reading request headers: the one helper every route and the server use. */
import type { AnyRequest } from "./router.ts";

/** A request header's value; repeated headers joined with ", " (as node:http does for most names). */
export function header(req: AnyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(", ") : v;
}
