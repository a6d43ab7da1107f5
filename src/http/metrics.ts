/** GET /metrics: CPU, memory and disk of the guest in E2B envd's field names and units (src/upkeep/metrics.ts). */
import { Code, EnvdError } from "../errors.ts";
import { collectMetrics, type CpuSampler } from "../upkeep/metrics.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

export function getMetrics(cpu: CpuSampler): RouteHandler {
  return ({ res }) => {
    let metrics: ReturnType<typeof collectMetrics>;
    try {
      metrics = collectMetrics(cpu);
    } catch (err) {
      throw new EnvdError(Code.Internal, `failed to read metrics: ${(err as Error).message}`, { cause: err });
    }
    writeJson(res, 200, metrics, { "Cache-Control": "no-store" });
  };
}
