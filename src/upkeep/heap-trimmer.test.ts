import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createLogger } from "../log.ts";
import {
  bunTrim,
  HeapTrimmer,
  loadTrim,
  shouldTrim,
  TRIM_CLOSED_CONNECTIONS,
  TRIM_RELEASED_BYTES,
  TRIM_RELEASED_MIN_MS,
  TRIM_GROWTH_BYTES,
  TRIM_RETRY_MAX_MS,
  TRIM_RETRY_MIN_MS,
  type TrimState,
} from "./heap-trimmer.ts";

const MIB = 1024 * 1024;
const log = createLogger("error", () => {});
const TICK_MS = 2_000;

/**
 * A trimmer over scripted RSS samples (MiB), one per 2 s tick. `freeTo(rss)` is the RSS a trim
 * leaves (what the runtime could give back).
 */
function scripted(samples: number[], freeTo: (rssMiB: number) => number) {
  let rss = 0;
  let now = 0;
  const trims: string[] = [];
  const trimmer = new HeapTrimmer({
    log,
    rss: () => rss,
    now: () => now,
    trim: () => {
      rss = freeTo(rss / MIB) * MIB;
    },
  });
  samples.forEach((mib, i) => {
    rss = mib * MIB;
    now = i * TICK_MS;
    const reason = trimmer.tick();
    if (reason) trims.push(`${i}:${reason}`);
  });
  return trims;
}

const state = (s: Partial<TrimState>): TrimState => ({
  level: 50 * MIB,
  baseline: 50 * MIB,
  previous: 50 * MIB,
  lastTrimAt: 0,
  retryMs: TRIM_RETRY_MIN_MS,
  connections: 0,
  closedWaitMs: 0,
  released: 0,
  ...s,
});

describe("heap trimmer", () => {
  test("shouldTrim: a burst is over when RSS grew past the threshold and settled", () => {
    assert.equal(shouldTrim(state({ previous: 200 * MIB }), 200 * MIB, 1), "burst");
    assert.equal(shouldTrim(state({ previous: 120 * MIB }), 200 * MIB, 1), undefined, "still growing");
    assert.equal(shouldTrim(state({ previous: 260 * MIB }), 200 * MIB, 1), undefined, "still falling");
    assert.equal(shouldTrim(state({}), 50 * MIB + TRIM_GROWTH_BYTES - 1, 1), undefined, "not enough growth");
  });

  test("shouldTrim: retries above the baseline only once retryMs has passed", () => {
    const high = state({ level: 150 * MIB, previous: 150 * MIB, lastTrimAt: 0 });
    assert.equal(shouldTrim(high, 150 * MIB, TRIM_RETRY_MIN_MS - 1), undefined);
    assert.equal(shouldTrim(high, 150 * MIB, TRIM_RETRY_MIN_MS), "retry");
    assert.equal(shouldTrim({ ...high, baseline: 140 * MIB }, 150 * MIB, TRIM_RETRY_MIN_MS), undefined, "close to the baseline");
  });

  test("shouldTrim: 'closed' once enough of the connections open at the last trim have gone, while RSS is still well above idle", () => {
    const after = state({ level: 120 * MIB, previous: 120 * MIB, connections: 200 });
    assert.equal(shouldTrim(after, 120 * MIB, 1, 200 - TRIM_CLOSED_CONNECTIONS), "closed");
    assert.equal(shouldTrim(after, 120 * MIB, 1, 200 - TRIM_CLOSED_CONNECTIONS + 1), undefined, "too few closed");
    assert.equal(shouldTrim({ ...after, baseline: 110 * MIB }, 120 * MIB, 1, 0), undefined, "close to the baseline: nothing to give back");
    assert.equal(shouldTrim({ ...after, previous: 140 * MIB }, 120 * MIB, 1, 0), undefined, "not settled");
  });

  test("shouldTrim: 'released' once 8 MiB of ended output was let go since the last trim, at most every 10 s, while RSS is well above idle", () => {
    const after = state({ level: 120 * MIB, previous: 120 * MIB, released: 100 * MIB, lastTrimAt: 0 });
    assert.equal(shouldTrim(after, 120 * MIB, TRIM_RELEASED_MIN_MS, 0, 100 * MIB + TRIM_RELEASED_BYTES), "released");
    assert.equal(shouldTrim(after, 120 * MIB, TRIM_RELEASED_MIN_MS - 1, 0, 100 * MIB + TRIM_RELEASED_BYTES), undefined, "too soon");
    assert.equal(shouldTrim(after, 120 * MIB, TRIM_RELEASED_MIN_MS, 0, 100 * MIB + TRIM_RELEASED_BYTES - 1), undefined, "too little");
    assert.equal(shouldTrim({ ...after, baseline: 110 * MIB }, 120 * MIB, TRIM_RELEASED_MIN_MS, 0, 200 * MIB), undefined, "close to the baseline");
  });

  test("a burst's trim, then its clients leave: one more trim once they have, none while they stay", () => {
    const run = (connectionsAfter: number) => {
      let rss = 0;
      let conns = 0;
      let now = 0;
      const reasons: string[] = [];
      const t = new HeapTrimmer({
        log,
        rss: () => rss,
        now: () => now,
        connections: () => conns,
        trim: () => {
          rss = (rss > 150 * MIB ? 120 : 60) * MIB; // the burst's trim, then the clients' memory
        },
      });
      // [RSS in MiB, or undefined to keep what the last trim left; open connections]
      const script: [number | undefined, number][] = [
        [50, 0],
        [50, 0],
        [200, 200],
        [200, 200], // settled: the burst's trim, with 200 clients still connected
        [undefined, 200],
        [undefined, connectionsAfter],
        [undefined, connectionsAfter],
        [undefined, connectionsAfter],
      ];
      for (const [mib, c] of script) {
        if (mib !== undefined) rss = mib * MIB;
        conns = c;
        now += TICK_MS;
        const reason = t.tick();
        if (reason) reasons.push(reason);
      }
      return reasons;
    };
    assert.deepEqual(run(0), ["burst", "closed"]);
    assert.deepEqual(run(190), ["burst"]);
  });

  test("closed trims that free little back off: a client opening and closing 40 connections every tick costs one collection per 30 s, not one per tick", () => {
    let rss = 0;
    let conns = 0;
    let now = 0;
    const at: number[] = [];
    const t = new HeapTrimmer({ log, rss: () => rss, now: () => now, connections: () => conns, trim: () => {} });
    rss = 50 * MIB;
    t.tick();
    rss = 100 * MIB; // memory really in use: trims free nothing
    for (let i = 1; i <= 60; i++) {
      conns = i % 2 === 0 ? 40 : 0;
      now = i * TICK_MS;
      const reason = t.tick();
      if (reason === "closed") at.push(now);
    }
    assert.ok(at.length >= 2 && at.length <= 4, `closed trims at ${at.join(", ")} ms`);
    for (let i = 1; i < at.length; i++) assert.ok((at[i] as number) - (at[i - 1] as number) >= TRIM_RETRY_MIN_MS, `${at.join(", ")}`);
  });

  test("trims once after a burst, then takes the new RSS as its level", () => {
    // idle 50, burst to 200, settles: trim → 60, stays there
    const trims = scripted([50, 50, 120, 200, 200, 60, 60, 61, ...Array(40).fill(60)], () => 60);
    assert.deepEqual(trims, ["4:burst"]);
  });

  test("memory that becomes garbage later is given back by a retry", () => {
    // 150 MiB stay referenced for a while (the first trim frees nothing), then could go back to 55
    const retryAt = 2 + TRIM_RETRY_MIN_MS / TICK_MS;
    const samples = [50, 150, ...Array(retryAt - 1).fill(150), ...Array(20).fill(55)];
    let calls = 0;
    const trims = scripted(samples, (rss) => (++calls === 1 ? rss : 55));
    assert.deepEqual(trims, ["2:burst", `${retryAt}:retry`]);
  });

  test("memory really in use: retries back off and stop at the maximum interval", () => {
    const ticks = (TRIM_RETRY_MAX_MS * 4) / TICK_MS;
    const trims = scripted([50, 150, ...Array(ticks).fill(150)], (rss) => rss);
    const at = trims.map((t) => Number(t.split(":")[0]) * TICK_MS);
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
    assert.deepEqual(gaps.slice(0, 5), [30_000, 60_000, 120_000, 240_000, 480_000]);
    assert.ok(gaps.every((g) => g <= TRIM_RETRY_MAX_MS));
  });

  test("beforeTrim runs just before each trim (never on a tick that does not trim), and its count is logged", () => {
    let rss = 50 * MIB;
    let now = 0;
    const order: string[] = [];
    const lines: Record<string, unknown>[] = [];
    const t = new HeapTrimmer({
      log: createLogger("debug", (line) => lines.push(JSON.parse(line) as Record<string, unknown>)),
      rss: () => rss,
      now: () => now,
      beforeTrim: () => {
        order.push("pack");
        return 7;
      },
      trim: () => {
        order.push("trim");
        rss = 60 * MIB;
      },
    });
    for (const mib of [50, 50, 200, 200, 60, 60]) {
      rss = mib * MIB;
      now += TICK_MS;
      t.tick();
    }
    assert.deepEqual(order, ["pack", "trim"]);
    assert.equal(lines.find((l) => l.msg === "heap trimmed")?.packed, 7);
  });

  test("start is idempotent and stop ends the loop", () => {
    const t = new HeapTrimmer({ log, rss: () => 0, trim: () => {} });
    t.start();
    t.start();
    assert.equal(t.running, true);
    t.stop();
    assert.equal(t.running, false);
  });

  test("Bun: two full collections, JSC's shrink only while no request is in flight, malloc_trim bound once", () => {
    const calls: string[] = [];
    let quiet = false;
    let binds = 0;
    const trim = bunTrim(
      { gc: (force) => void calls.push(`gc ${force}`), shrink: () => void calls.push("shrink") },
      () => quiet,
      () => {
        binds++;
        return () => void calls.push("malloc_trim");
      },
    );
    assert.deepEqual(trim(), { shrunk: false });
    assert.deepEqual(calls, ["gc true", "gc true", "malloc_trim"]);
    calls.length = 0;
    quiet = true;
    assert.deepEqual(trim(), { shrunk: true });
    assert.deepEqual(calls, ["gc true", "gc true", "shrink", "malloc_trim"]);
    assert.equal(binds, 1);
  });

  test("this runtime can trim, and trimming is harmless", () => {
    const trim = loadTrim();
    assert.ok(trim, "malloc_trim through node:ffi");
    trim();
  });
});
