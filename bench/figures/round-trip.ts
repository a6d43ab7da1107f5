/**
 * `commands.run('true')` round trip, p50 and p99.
 *  - floor: fork + exec + waitpid of `true` (timed in Perl);
 *  - peer: `ssh host true` over a kept ControlMaster connection (each run is a new `ssh` client
 *    process that multiplexes a channel over the open connection, as a user's script would);
 *  - ours: the e2b SDK's `commands.run('true')` (it starts `/bin/bash -l -c true`), and, to show
 *    the daemon's own share, Connect `Process.Start` of `true` with no shell.
 */
import type { Client } from "@connectrpc/connect";
import type { Sandbox } from "e2b";
import type { Process } from "../../src/gen/process/process_pb.js";
import { type Percentiles, percentiles, timeRuns } from "../lib/measure.ts";

export interface SpawnFloor {
  /** fork+exec+wait of `true`. */
  true: Percentiles;
  /** fork+exec+wait of what the SDK runs, as the user (setpriv + `bash -l -c true`): the shell's own cost; undefined without setpriv. */
  loginShell: Percentiles | undefined;
  via: string;
}

export function measureSpawnFloor(n: number, user: string): SpawnFloor {
  const t = timeRuns(["/bin/true"], n);
  let loginShell: Percentiles | undefined;
  try {
    const argv = ["setpriv", `--reuid=${user}`, `--regid=${user}`, "--init-groups", "--", "/bin/bash", "-l", "-c", "true"];
    loginShell = percentiles(timeRuns(argv, Math.ceil(n / 4), { PATH: "/usr/bin:/bin", HOME: `/home/${user}`, USER: user }).ms);
  } catch {
    loginShell = undefined; // no setpriv or no bash: the context figure is simply missing
  }
  return { true: percentiles(t.ms), loginShell, via: t.via };
}

export function measureSshExec(ssh: string[], n: number): Percentiles {
  return percentiles(timeRuns([...ssh, "true"], n).ms);
}

export interface OursRoundTrip {
  sdk: Percentiles;
  connect: Percentiles;
}

/** The soak: `n` SDK `commands.run('true')` in a row; returns each round trip in ms. */
export async function soak(sbx: Sandbox, user: string, n: number): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = performance.now();
    const r = await sbx.commands.run("true", { user });
    ms.push(performance.now() - a);
    if (r.exitCode !== 0) throw new Error(`commands.run('true') exited ${r.exitCode}`);
  }
  return ms;
}

/**
 * The round trip: a soak of `n` SDK commands (the first 10 % are warm-up, not counted), then
 * Connect starts of `true` without a shell.
 */
export async function measureOursRoundTrip(sbx: Sandbox, client: Client<typeof Process>, user: string, n: number): Promise<OursRoundTrip> {
  const sdk = (await soak(sbx, user, n)).slice(Math.max(1, Math.floor(n / 10)));
  const connect: number[] = [];
  const m = Math.max(20, Math.floor(n / 3));
  for (let i = 0; i < m + 10; i++) {
    const a = performance.now();
    let code: number | undefined;
    for await (const res of client.start({ process: { cmd: "/bin/true" } })) {
      if (res.event?.event.case === "end") code = res.event.event.value.exitCode;
    }
    if (code !== 0) throw new Error(`Start true ended with ${code}`);
    if (i >= 10) connect.push(performance.now() - a);
  }
  return { sdk: percentiles(sdk), connect: percentiles(connect) };
}
