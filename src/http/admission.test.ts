import assert from "node:assert/strict";
import { test } from "node:test";
import { loopbackPair } from "../../test/loopback-pair.ts";
import { until } from "../../test/until.ts";
import { createAdmission } from "./admission.ts";

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

test("requests are handled at once while the turn's budget lasts", () => {
  const clock = manualClock();
  const admission = createAdmission(2, clock.now);
  const handled: number[] = [];
  for (let i = 0; i < 50; i++) admission.admit(() => handled.push(i));
  assert.equal(handled.length, 50, "no time passed: every one in this turn");
  assert.equal(admission.waiting, 0);
});

test("once the budget is spent, the rest wait for later turns in arrival order, and a new burst starts fresh", async () => {
  const clock = manualClock();
  const admission = createAdmission(2, clock.now);
  const handled: string[] = [];
  admission.admit(() => handled.push("a"));
  clock.advance(3);
  for (const name of ["b", "c", "d"]) admission.admit(() => handled.push(name));
  assert.deepEqual(handled, ["a"], "b, c and d wait");
  assert.equal(admission.waiting, 3);
  await nextTurn();
  // A request that arrives while others wait queues behind them, even in a fresh turn.
  admission.admit(() => handled.push("e"));
  await until(() => admission.waiting === 0, "the queue to drain");
  assert.deepEqual(handled, ["a", "b", "c", "d", "e"]);
  // The queue is empty and the turn that handled the last one has passed: handled at once again.
  await nextTurn();
  await nextTurn();
  admission.admit(() => handled.push("f"));
  assert.deepEqual(handled.at(-1), "f");
});

test("socket I/O is handled between two waiting requests", async () => {
  // A loopback pair: what one request's handling writes is read before the next one is handled.
  const { client, peer, close } = await loopbackPair();
  const log: string[] = [];
  peer.on("data", (d) => log.push(`read ${d.toString()}`));
  const clock = manualClock();
  const admission = createAdmission(2, clock.now);
  try {
    admission.admit(() => clock.advance(5)); // the first request spends the turn's budget
    for (let i = 0; i < 5; i++)
      admission.admit(() => {
        log.push(`handle ${i}`);
        clock.advance(5);
        client.write(String(i));
        // Stands in for the request's handling: the loop cannot run during it, and the loopback
        // write reaches the peer meanwhile.
        const until = performance.now() + 3;
        while (performance.now() < until);
      });
    const read = () => log.filter((l) => l.startsWith("read ")).join("").replaceAll("read ", "");
    await until(() => admission.waiting === 0 && read().length === 5, "every request handled and read");
  } finally {
    close();
  }
  // Each read holds one request's byte: nothing was handled before the previous write was read.
  for (let i = 0; i < 4; i++) assert.ok(log.indexOf(`read ${i}`) !== -1 && log.indexOf(`read ${i}`) < log.indexOf(`handle ${i + 1}`), log.join(", "));
});
