import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DisposableStore, toDisposable } from "./lifecycle.ts";

describe("DisposableStore", () => {
  test("disposes in reverse order of adding, sync and async alike, and awaits each before the next", async () => {
    const order: string[] = [];
    const store = new DisposableStore();
    store.add({ [Symbol.dispose]: () => void order.push("first (sync)") });
    store.add(
      toDisposable(async () => {
        await new Promise<void>((r) => setImmediate(r));
        order.push("second (async)");
      }),
    );
    store.add(toDisposable(() => void order.push("third")));
    await store[Symbol.asyncDispose]();
    assert.deepEqual(order, ["third", "second (async)", "first (sync)"]);
    assert.equal(store.isDisposed, true);
  });

  test("disposing twice disposes each item once and returns the same promise", async () => {
    let n = 0;
    const store = new DisposableStore();
    store.add(toDisposable(() => void n++));
    const a = store[Symbol.asyncDispose]();
    const b = store[Symbol.asyncDispose]();
    assert.equal(a, b);
    await a;
    assert.equal(n, 1);
  });

  test("an item that throws does not stop the others; the error comes out at the end", async () => {
    const order: string[] = [];
    const store = new DisposableStore();
    store.add(toDisposable(() => void order.push("a")));
    store.add(
      toDisposable(() => {
        throw new Error("b failed");
      }),
    );
    store.add(toDisposable(() => void order.push("c")));
    await assert.rejects(store[Symbol.asyncDispose](), /b failed/);
    assert.deepEqual(order, ["c", "a"]);
  });

  test("several failures reject with an AggregateError holding each", async () => {
    const store = new DisposableStore();
    for (const name of ["x", "y"]) {
      store.add(
        toDisposable(() => {
          throw new Error(name);
        }),
      );
    }
    const err = await store[Symbol.asyncDispose]().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof AggregateError);
    assert.deepEqual(
      err.errors.map((e: Error) => e.message),
      ["y", "x"],
    );
  });

  test("an item added after disposal is disposed at once, not kept", async () => {
    const store = new DisposableStore();
    await store[Symbol.asyncDispose]();
    let disposed = false;
    const item = store.add({
      [Symbol.dispose]: () => {
        disposed = true;
      },
    });
    assert.ok(item);
    assert.equal(disposed, true);
  });

  test("toDisposable runs its function once", async () => {
    let n = 0;
    const d = toDisposable(() => void n++);
    await d[Symbol.asyncDispose]();
    await d[Symbol.asyncDispose]();
    assert.equal(n, 1);
  });
});
