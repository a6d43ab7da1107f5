import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { HeapTrimmer, loadTrim, shouldTrim, TRIM_GROWTH_BYTES } from "./heap-trimmer.ts";

const MIB = 1024 * 1024;
const log = createLogger("error", () => {});

/** A trimmer over a scripted RSS: `trimTo` is what RSS becomes when it trims. */
function scripted(samples: number[], trimTo: number) {
  let rss = 0;
  const trims: number[] = [];
  const trimmer = new HeapTrimmer({
    log,
    rss: () => rss,
    trim: () => {
      trims.push(rss);
      rss = trimTo * MIB;
    },
  });
  const results = samples.map((mib) => {
    rss = mib * MIB;
    return trimmer.tick();
  });
  return { results, trims: trims.map((b) => b / MIB), trimmer };
}

describe("heap trimmer", () => {
  test("shouldTrim: grown past the threshold and settled", () => {
    const level = 50 * MIB;
    assert.equal(shouldTrim({ level, previous: 200 * MIB }, 200 * MIB), true);
    assert.equal(shouldTrim({ level, previous: 120 * MIB }, 200 * MIB), false, "still growing");
    assert.equal(shouldTrim({ level, previous: 260 * MIB }, 200 * MIB), false, "still falling");
    assert.equal(shouldTrim({ level, previous: level }, level + TRIM_GROWTH_BYTES - 1), false, "not enough growth");
  });

  test("trims once after a burst, then takes the new RSS as its level", () => {
    // idle 50, burst up to 200, settles at 200: trim → 60; stays at 60 (no second trim)
    const { results, trims } = scripted([50, 50, 120, 200, 200, 60, 60, 61], 60);
    assert.deepEqual(results, [false, false, false, false, true, false, false, false]);
    assert.deepEqual(trims, [200]);
  });

  test("memory really in use is not trimmed over and over", () => {
    // a burst that leaves 150 MiB live: one trim (nothing freed), then quiet
    const { trims } = scripted([50, 150, 150, 150, 150, 150, 150], 150);
    assert.deepEqual(trims, [150]);
  });

  test("the level follows RSS down, so the next burst is measured from the lower level", () => {
    const { trims } = scripted([100, 40, 40, 70, 70], 45);
    assert.deepEqual(trims, [70]);
  });

  test("start is idempotent and stop ends the loop", () => {
    const t = new HeapTrimmer({ log, rss: () => 0, trim: () => {} });
    t.start();
    t.start();
    assert.equal(t.running, true);
    t.stop();
    assert.equal(t.running, false);
  });

  test("this runtime can trim, and trimming is harmless", () => {
    const trim = loadTrim();
    assert.ok(trim, "malloc_trim through node:ffi");
    trim();
  });
});
