/**
 * GET /activity (Wrenn; envd-rs `src/http/activity.rs`): `{cpu_count, cpu_used_pct, net_bps,
 * disk_bps}` with `Cache-Control: no-store`, read from the 1 s sampler (upkeep/metrics.ts,
 * upkeep/activity.ts): no syscall per request, so the host may poll it every few seconds.
 */
import type { CpuSampler } from "../upkeep/metrics.ts";
import { writeJson } from "./respond.ts";
import type { RouteHandler } from "./router.ts";

export interface Activity {
  cpu_count: number;
  cpu_used_pct: number;
  net_bps: number;
  disk_bps: number;
}

export function getActivity(sampler: CpuSampler): RouteHandler {
  return ({ res }) => {
    const body: Activity = {
      cpu_count: sampler.cpuCount,
      cpu_used_pct: sampler.percent,
      net_bps: sampler.netBps,
      disk_bps: sampler.diskBps,
    };
    writeJson(res, 200, body, { "Cache-Control": "no-store" });
  };
}
