/**
 * Settings of the VM-lifecycle parts (port forwarding, reaping, page-cache reclaim, fsfreeze).
 * Pure: parsing touches nothing.
 *
 * Flags: `-forward-address` (comma-separated host-facing addresses; "" turns forwarding off),
 * `-reaper auto|on|off`, `-reclaim-threshold PCT` (0 turns the reclaimer off).
 * Test knobs, read once at start (never needed in production): `ENVD_MEMINFO_PATH`,
 * `ENVD_DROP_CACHES_PATH`, `ENVD_FSFREEZE_PATH` (the mount point /fsfreeze acts on; also the only
 * way to allow /fsfreeze with -isnotfc, where freezing "/" would freeze the host machine),
 * `ENVD_FSTRIM_COMMAND` (a program prepare runs instead of `fstrim -a`, so a test never trims the
 * machine it runs on).
 */
import { isIP } from "node:net";
import type { ReaperMode } from "../process/reaper-init.ts";

export interface LifecycleConfig {
  forwardAddresses: string[];
  reaper: ReaperMode;
  reclaimThresholdPct: number;
  meminfoPath: string;
  dropCachesPath: string;
  /** Undefined: /fsfreeze is refused. */
  fsFreezePath: string | undefined;
  /** Undefined: `fstrim -a`. */
  fstrimCommand: string | undefined;
}

export const DEFAULT_FORWARD_ADDRESS = "169.254.0.21";

export function parseLifecycleConfig(
  flags: { forwardAddress?: string | undefined; reaper?: string | undefined; reclaimThreshold?: string | undefined },
  env: NodeJS.ProcessEnv,
  isNotFc: boolean,
): LifecycleConfig | { error: string } {
  const addrText = flags.forwardAddress ?? DEFAULT_FORWARD_ADDRESS;
  const forwardAddresses = addrText
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const a of forwardAddresses) if (isIP(a) === 0) return { error: `invalid value "${a}" for flag -forward-address` };
  const reaper = flags.reaper ?? "auto";
  if (reaper !== "auto" && reaper !== "on" && reaper !== "off") return { error: `invalid value "${reaper}" for flag -reaper` };
  const thresholdText = flags.reclaimThreshold ?? "80";
  const reclaimThresholdPct = Number(thresholdText);
  if (!/^\d+(\.\d+)?$/.test(thresholdText) || reclaimThresholdPct > 100) {
    return { error: `invalid value "${thresholdText}" for flag -reclaim-threshold` };
  }
  const nonEmpty = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);
  return {
    forwardAddresses,
    reaper,
    reclaimThresholdPct,
    meminfoPath: nonEmpty(env.ENVD_MEMINFO_PATH) ?? "/proc/meminfo",
    dropCachesPath: nonEmpty(env.ENVD_DROP_CACHES_PATH) ?? "/proc/sys/vm/drop_caches",
    fsFreezePath: nonEmpty(env.ENVD_FSFREEZE_PATH) ?? (isNotFc ? undefined : "/"),
    fstrimCommand: nonEmpty(env.ENVD_FSTRIM_COMMAND),
  };
}
