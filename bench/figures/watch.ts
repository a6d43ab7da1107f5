/**
 * Watch event latency: the e2b SDK's `files.watchDir` on an empty directory; the bench creates one
 * file at a time and times write → the SDK's callback for that file's event.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Sandbox } from "e2b";
import { type Percentiles, percentiles, sleep } from "../lib/measure.ts";

export interface OursWatch {
  events: number;
  latencyMs: Percentiles;
  missed: number;
}

/** Probes whether the daemon serves WatchDir (issue 4). */
export async function watchAvailable(sbx: Sandbox, dir: string, user: string): Promise<boolean> {
  try {
    const h = await sbx.files.watchDir(dir, () => {}, { user, timeoutMs: 5_000 });
    await h.stop();
    return true;
  } catch {
    return false;
  }
}

export async function measureOursWatch(sbx: Sandbox, dir: string, user: string, n: number): Promise<OursWatch> {
  const seen = new Map<string, number>();
  let waiter: { name: string; resolve: () => void } | undefined;
  const handle = await sbx.files.watchDir(
    dir,
    (ev) => {
      if (!seen.has(ev.name)) seen.set(ev.name, performance.now());
      if (waiter && ev.name === waiter.name) waiter.resolve();
    },
    { user, timeoutMs: 0 },
  );
  const latency: number[] = [];
  let missed = 0;
  try {
    for (let i = 0; i < n; i++) {
      const name = `f${i}`;
      const arrived = new Promise<void>((resolve) => (waiter = { name, resolve }));
      const a = performance.now();
      writeFileSync(join(dir, name), "x");
      const ok = await Promise.race([arrived.then(() => true), sleep(2_000).then(() => false)]);
      waiter = undefined;
      if (ok) latency.push((seen.get(name) as number) - a);
      else missed++;
    }
  } finally {
    await handle.stop();
  }
  return { events: n, latencyMs: percentiles(latency), missed };
}
