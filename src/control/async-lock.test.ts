import assert from "node:assert/strict";
import { test } from "node:test";
import { AsyncLock } from "./async-lock.ts";

test("AsyncLock grants in FIFO order, one holder at a time", async () => {
  const lock = new AsyncLock();
  const order: number[] = [];
  let inside = 0;
  await Promise.all(
    [1, 2, 3, 4].map(async (n) => {
      const release = await lock.acquire();
      inside++;
      assert.equal(inside, 1);
      order.push(n);
      await new Promise((r) => setImmediate(r));
      inside--;
      release();
    }),
  );
  assert.deepEqual(order, [1, 2, 3, 4]);
  assert.equal(lock.held, false);
});

test("a waiter whose signal fires leaves the queue and never holds the lock", async () => {
  const lock = new AsyncLock();
  const release = await lock.acquire();
  const controller = new AbortController();
  const gaveUp = lock.acquire(controller.signal);
  const third = lock.acquire();
  controller.abort(new Error("caller left"));
  await assert.rejects(gaveUp, /caller left/);
  release();
  const releaseThird = await third;
  assert.equal(lock.held, true);
  releaseThird();
  releaseThird(); // idempotent
  assert.equal(lock.held, false);
});

test("an already aborted signal rejects at once", async () => {
  const lock = new AsyncLock();
  await assert.rejects(lock.acquire(AbortSignal.abort(new Error("gone"))), /gone/);
  assert.equal(lock.held, false);
});
