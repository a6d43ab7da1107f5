/**
 * Where a process start's time goes (diagnostic, not part of `npm run bench`): for each way of
 * starting `/bin/true`, how long the spawn call blocks the event loop (the synchronous part, which
 * is what freezes /health during a start storm), and the round trip spawn → exit, sequential.
 *
 *   bun bench/spawn-paths.ts [n]     node bench/spawn-paths.ts [n]
 *
 * Variants: child_process.spawn with pipes as the daemon uses it (detached, stdio pipes), the
 * same through the launch wrapper (`/bin/sh -c 'echo 100 > /proc/$$/oom_score_adj; exec "$@"'`),
 * and on Bun, Bun.spawn with and without the wrapper.
 */
import { spawn } from "node:child_process";
import { percentiles } from "./lib/measure.ts";

const n = Number(process.argv[2] ?? 200);
const WRAP = ["/bin/sh", "-c", 'echo 100 > /proc/$$/oom_score_adj 2>/dev/null\nexec "$@"', "--"];
const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";

type Starter = (argv: string[]) => { blockedMs: number; exited: Promise<void> };

const nodeSpawn: Starter = (argv) => {
  const a = performance.now();
  const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const blockedMs = performance.now() - a;
  child.stdout?.resume();
  child.stderr?.resume();
  return { blockedMs, exited: new Promise((r) => child.once("close", () => r())) };
};

interface BunLike {
  spawn(argv: string[], o: { stdout: "pipe"; stderr: "pipe"; stdin: "ignore" }): { exited: Promise<number> };
}
const bunSpawn: Starter = (argv) => {
  const a = performance.now();
  const proc = (globalThis as unknown as { Bun: BunLike }).Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const blockedMs = performance.now() - a;
  return { blockedMs, exited: proc.exited.then(() => undefined) };
};

async function measure(name: string, start: Starter, argv: string[]) {
  const blocked: number[] = [];
  const trip: number[] = [];
  for (let i = 0; i < n + 10; i++) {
    const a = performance.now();
    const s = start(argv);
    await s.exited;
    if (i >= 10) {
      blocked.push(s.blockedMs);
      trip.push(performance.now() - a);
    }
  }
  // A storm: all at once, as 200 Start requests arriving together would be served today.
  const a = performance.now();
  const all = Array.from({ length: n }, () => start(argv));
  const stormBlockedMs = performance.now() - a;
  await Promise.all(all.map((s) => s.exited));
  const stormMs = performance.now() - a;
  const b = percentiles(blocked);
  const t = percentiles(trip);
  process.stdout.write(
    `${(isBun ? "bun " : "node ") + name.padEnd(22)} blocks p50 ${b.p50.toFixed(2)} p99 ${b.p99.toFixed(2)} ms; ` +
      `spawn→exit p50 ${t.p50.toFixed(2)} p99 ${t.p99.toFixed(2)} ms; ${n} at once: loop blocked ${stormBlockedMs.toFixed(0)} ms, all exited ${stormMs.toFixed(0)} ms\n`,
  );
}

await measure("child_process", nodeSpawn, ["/bin/true"]);
await measure("child_process + sh", nodeSpawn, [...WRAP, "/bin/true"]);
if (isBun) {
  await measure("Bun.spawn", bunSpawn, ["/bin/true"]);
  await measure("Bun.spawn + sh", bunSpawn, [...WRAP, "/bin/true"]);
}
