/** The daemon's own OOM score; each child sets its own back to 100 in its launch wrapper (process/launch-plan.ts). */
import { writeFileSync } from "node:fs";
import type { Logger } from "../log.ts";

/** The daemon's own OOM score: below everything else, but (unlike -1000) still killable as a last resort. */
export const DAEMON_OOM_SCORE_ADJ = -999;

/** Lowers the daemon's OOM score so the workload is killed first (children get 100 back in their wrapper). */
export function protectDaemonFromOom(log: Logger): void {
  try {
    writeFileSync("/proc/self/oom_score_adj", String(DAEMON_OOM_SCORE_ADJ));
  } catch (err) {
    log.debug("cannot lower the daemon's oom_score_adj", { err: String(err) });
  }
}
