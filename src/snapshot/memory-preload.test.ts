import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { existsSync } from "node:fs";
import { MEMORY_PRELOAD_WORKER, MemoryPreloader, type PreloadWalk, workerWalk } from "./memory-preload.ts";
import type { WalkResult } from "./memory-preload-protocol.ts";

const log = createLogger("error", () => {});
const dir = mkdtempSync(join(tmpdir(), "envd-preload-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A walk the test ends by hand. */
function fakeWalks() {
  const walks: (PreloadWalk & { finish(r: WalkResult): void; stopped: boolean; pages: number })[] = [];
  const start = () => {
    let finish!: (r: WalkResult) => void;
    const w = {
      stopped: false,
      pages: 0,
      progress: () => ({ pages: w.pages, bytes: w.pages * 4096 }),
      stop: () => {
        w.stopped = true;
      },
      done: new Promise<WalkResult>((r) => (finish = r)),
      finish: (r: WalkResult) => finish(r),
    };
    walks.push(w);
    return w;
  };
  return { walks, start };
}
/** The i-th walk started (fails the test if there is none). */
function nth<T>(list: T[], i: number): T {
  const v = list[i];
  if (v === undefined) throw new Error(`no walk #${i}`);
  return v;
}
const ok = (pages: number, stopped = false): WalkResult => ({ ok: true, stopped, source: "/dev/mem", regions: 1, pages, bytes: pages * 4096 });
const tick = () => new Promise((r) => setImmediate(r));

/** Polls `check` until it returns something, for at most 10 s. */
async function eventually<T>(check: () => T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("MemoryPreloader state machine", () => {
  test("idle, running with progress, done; start is idempotent while running and once done", async () => {
    const { walks, start } = fakeWalks();
    const p = new MemoryPreloader({ log, startWalk: start });
    assert.deepEqual(p.status(), { state: "idle", regions: 0, pages: 0, bytes: 0, elapsed_sec: 0, source: "", error: null });
    assert.equal(p.start().state, "running");
    nth(walks, 0).pages = 7;
    const running = p.start();
    assert.equal(walks.length, 1, "a second start does not start a second walk");
    assert.equal(running.state, "running");
    assert.equal(running.pages, 7);
    assert.equal(running.bytes, 7 * 4096);
    nth(walks, 0).finish(ok(16));
    await tick();
    const done = p.status();
    assert.equal(done.state, "done");
    assert.deepEqual({ ...done, elapsed_sec: 0 }, { state: "done", regions: 1, pages: 16, bytes: 65536, elapsed_sec: 0, source: "/dev/mem", error: null });
    assert.equal(p.start().state, "done");
    assert.equal(walks.length, 1, "done stays done for the lifecycle");
  });

  test("cancel stops the walk; the state is cancelled once it has stopped; a new start runs again", async () => {
    const { walks, start } = fakeWalks();
    const p = new MemoryPreloader({ log, startWalk: start });
    p.cancel(); // idle: nothing to cancel
    assert.equal(p.status().state, "idle");
    p.start();
    p.cancel();
    assert.equal(nth(walks, 0).stopped, true);
    assert.equal(p.status().state, "running", "still running until the walk has stopped");
    nth(walks, 0).finish(ok(3, true));
    await tick();
    assert.equal(p.status().state, "cancelled");
    assert.equal(p.status().pages, 3);
    assert.equal(p.start().state, "running");
    assert.equal(walks.length, 2);
  });

  test("a failed walk reports its error; a new start retries", async () => {
    const { walks, start } = fakeWalks();
    const p = new MemoryPreloader({ log, startWalk: start });
    p.start();
    nth(walks, 0).finish({ ok: false, stopped: false, error: "/dev/mem: EPERM; /proc/kcore: ENOENT" });
    await tick();
    const s = p.status();
    assert.equal(s.state, "failed");
    assert.equal(s.error, "/dev/mem: EPERM; /proc/kcore: ENOENT");
    assert.equal(s.source, "");
    p.start();
    assert.equal(walks.length, 2);
  });

  test("a new lifecycle stops the running walk, goes back to idle, and the old result is discarded", async () => {
    const { walks, start } = fakeWalks();
    const p = new MemoryPreloader({ log, startWalk: start });
    p.start();
    p.newLifecycle();
    assert.equal(nth(walks, 0).stopped, true);
    assert.equal(p.status().state, "idle");
    nth(walks, 0).finish(ok(99));
    await tick();
    assert.equal(p.status().state, "idle", "the stale walk publishes nothing");
    // The next run of the new lifecycle is not confused by the old one finishing late.
    p.start();
    p.newLifecycle();
    p.start();
    nth(walks, 1).finish(ok(5));
    await tick();
    assert.equal(p.status().state, "running");
    nth(walks, 2).finish(ok(6));
    await tick();
    assert.equal(p.status().pages, 6);
  });

  test("a new lifecycle after done allows a new run", async () => {
    const { walks, start } = fakeWalks();
    const p = new MemoryPreloader({ log, startWalk: start });
    p.start();
    nth(walks, 0).finish(ok(1));
    await tick();
    p.newLifecycle();
    assert.equal(p.status().state, "idle");
    assert.equal(p.start().state, "running");
  });
});

test("the worker's path under src/ (what the compiled binary looks up) names this worker", () => {
  assert.ok(existsSync(new URL(`../${MEMORY_PRELOAD_WORKER}`, import.meta.url)));
  assert.ok(new URL(`../${MEMORY_PRELOAD_WORKER}`, import.meta.url).href.endsWith("/memory-preload-worker.ts"));
});

describe("the preload worker thread, on a tiny injected range", () => {
  const iomem = join(dir, "iomem");
  writeFileSync(iomem, "00000000-00000fff : Reserved\n00010000-0001ffff : System RAM\n  00010000-000100ff : Kernel code\n");

  test("walks /dev/mem (here a 128 KiB file) one byte per page", async () => {
    const mem = join(dir, "mem");
    writeFileSync(mem, Buffer.alloc(0x20000, 1));
    const p = new MemoryPreloader({ log, startWalk: workerWalk({ iomem, devMem: mem, kcore: join(dir, "none") }) });
    p.start();
    const s = await eventually(() => (p.status().state !== "running" ? p.status() : undefined), "the walk to end");
    assert.equal(s.state, "done", JSON.stringify(s));
    assert.deepEqual({ ...s, elapsed_sec: 0 }, { state: "done", regions: 1, pages: 16, bytes: 65536, elapsed_sec: 0, source: "/dev/mem", error: null });
    assert.ok(s.elapsed_sec > 0);
  });

  test("falls back to /proc/kcore (here a small ELF core) when /dev/mem cannot be read", async () => {
    const kcore = join(dir, "kcore");
    const base = 0xffff888000000000n;
    const head = Buffer.alloc(64 + 56 * 2);
    head.writeUInt32LE(0x464c457f, 0);
    head[4] = 2;
    head[5] = 1;
    head.writeBigUInt64LE(64n, 0x20);
    head.writeUInt16LE(56, 0x36);
    head.writeUInt16LE(2, 0x38);
    // A decoy of the same size (vmemmap) whose base would not fit, then the RAM segment at 0x1000.
    for (const [i, vaddr, offset] of [[0, 0xffffea0000000000n, 0x1000n], [1, base + 0x10000n, 0x1000n]] as const) {
      const at = 64 + i * 56;
      head.writeUInt32LE(1, at);
      head.writeBigUInt64LE(offset, at + 8);
      head.writeBigUInt64LE(vaddr, at + 16);
      head.writeBigUInt64LE(0x10000n, at + 32);
    }
    writeFileSync(kcore, Buffer.concat([head, Buffer.alloc(0x1000 + 0x10000 - head.length, 2)]));
    const p = new MemoryPreloader({ log, startWalk: workerWalk({ iomem, devMem: join(dir, "no-dev-mem"), kcore }) });
    p.start();
    const s = await eventually(() => (p.status().state !== "running" ? p.status() : undefined), "the walk to end");
    assert.equal(s.state, "done", JSON.stringify(s));
    assert.equal(s.source, "/proc/kcore");
    assert.equal(s.pages, 16);
    assert.equal(s.regions, 1);
  });

  test("neither readable: failed, naming both", async () => {
    const p = new MemoryPreloader({ log, startWalk: workerWalk({ iomem, devMem: join(dir, "no-mem"), kcore: join(dir, "no-kcore") }) });
    p.start();
    const s = await eventually(() => (p.status().state !== "running" ? p.status() : undefined), "the walk to end");
    assert.equal(s.state, "failed");
    assert.match(s.error ?? "", /no-mem: .*ENOENT.*; .*no-kcore: .*ENOENT/);
  });

  test("no System RAM in iomem (an unprivileged reader sees zeros): failed", async () => {
    const hidden = join(dir, "iomem-hidden");
    writeFileSync(hidden, "00000000-00000000 : System RAM\n");
    const p = new MemoryPreloader({ log, startWalk: workerWalk({ iomem: hidden, devMem: join(dir, "mem"), kcore: join(dir, "none") }) });
    p.start();
    const s = await eventually(() => (p.status().state !== "running" ? p.status() : undefined), "the walk to end");
    assert.equal(s.state, "failed");
    assert.match(s.error ?? "", /no System RAM ranges/);
  });
});
