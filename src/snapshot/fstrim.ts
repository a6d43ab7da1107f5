/**
 * `fstrim` of every mounted filesystem that supports discard, before a snapshot (the Wrenn host's
 * pause.go: newer envd trims so the balloon's free-page reporting and a sparse disk image can
 * shrink what the snapshot stores). Best effort and bounded: the host gives prepare 5 s in all,
 * so fstrim gets FSTRIM_TIMEOUT_MS and is killed after that; a missing fstrim is skipped.
 *
 * util-linux `fstrim -a` trims all mounted filesystems; busybox's fstrim has no -a and gets `/`.
 */
import { runCommand } from "../control/volume-mounts.ts";

export const FSTRIM_TIMEOUT_MS = 2_000;

export interface TrimResult {
  outcome: "trimmed" | "unavailable" | "failed" | "timeout";
  ms: number;
  output?: string;
}

/**
 * Runs `command` (default `fstrim -a`, then `fstrim /` when -a is not understood). `command` is
 * one program run without arguments (tests name a recorder through ENVD_FSTRIM_COMMAND).
 */
export async function trimFilesystems(opts: { command?: string | undefined; timeoutMs?: number } = {}): Promise<TrimResult> {
  const started = performance.now();
  const signal = AbortSignal.timeout(opts.timeoutMs ?? FSTRIM_TIMEOUT_MS);
  const done = (outcome: TrimResult["outcome"], output?: string): TrimResult => ({
    outcome: signal.aborted ? "timeout" : outcome,
    ms: Math.round(performance.now() - started),
    ...(output ? { output: output.slice(0, 512) } : {}),
  });
  const attempts: [string, ...string[]][] = opts.command ? [[opts.command]] : [["fstrim", "-a"], ["fstrim", "/"]];
  let last = "";
  for (const argv of attempts) {
    const r = await runCommand(argv, signal);
    if (r.code === 0) return done("trimmed", r.output);
    if (r.code === null && /ENOENT/.test(r.output)) return done("unavailable");
    if (signal.aborted) return done("timeout");
    last = r.output;
    // Only a usage error (busybox: no -a) is worth the second spelling.
    if (!/usage|unrecognized|invalid option/i.test(r.output)) break;
  }
  return done("failed", last);
}
