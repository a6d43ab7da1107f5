import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, EnvdError } from "../errors.ts";
import type { FsEvent, Watcher } from "./watcher.ts";
import { newWatcherId, WatcherRegistry } from "./watcher-registry.ts";

function fakeWatcher(events: FsEvent[] = [], error?: EnvdError) {
  let closed = false;
  let queue = events;
  const w = {
    take: () => {
      const q = queue;
      queue = [];
      return q;
    },
    get error() {
      return queue.length === 0 ? error : undefined;
    },
    close: () => {
      closed = true;
    },
  };
  return { watcher: w as unknown as Watcher, isClosed: () => closed };
}

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return Code[(err as EnvdError).code];
  }
  return "ok";
};

test("ids are w + 20 characters of [a-z0-9]", () => {
  for (let i = 0; i < 100; i++) assert.match(newWatcherId(), /^w[a-z0-9]{20}$/);
});

test("poll drains once; a failed watcher reports its error after its events, every time", () => {
  const reg = new WatcherRegistry();
  const a = fakeWatcher([{ name: "f", type: "create" }]);
  const id = reg.add(a.watcher);
  assert.deepEqual(reg.poll(id), [{ name: "f", type: "create" }]);
  assert.deepEqual(reg.poll(id), []);
  const b = fakeWatcher([{ name: "g", type: "write" }], new EnvdError(Code.ResourceExhausted, "overflow"));
  const idb = reg.add(b.watcher);
  assert.equal(reg.poll(idb).length, 1);
  assert.equal(code(() => reg.poll(idb)), "ResourceExhausted");
  assert.equal(code(() => reg.poll(idb)), "ResourceExhausted");
  reg.remove(idb);
  assert.ok(b.isClosed());
  assert.equal(code(() => reg.poll(idb)), "NotFound");
  assert.equal(code(() => reg.remove(idb)), "NotFound");
  reg[Symbol.dispose]();
  assert.ok(a.isClosed());
  assert.equal(reg.size, 0);
});

test("the registry is bounded and sweeps watchers nobody polls", () => {
  let now = 0;
  const reg = new WatcherRegistry({ maxWatchers: 2, idleTtlMs: 1000, now: () => now });
  const a = fakeWatcher();
  const ida = reg.add(a.watcher);
  reg.add(fakeWatcher().watcher);
  assert.equal(code(() => reg.checkCapacity()), "ResourceExhausted");
  const c = fakeWatcher();
  assert.equal(code(() => reg.add(c.watcher)), "ResourceExhausted");
  assert.ok(c.isClosed(), "a refused watcher is closed");
  now = 900;
  reg.poll(ida);
  now = 1500;
  reg.sweep();
  assert.equal(reg.size, 1, "the unpolled one is gone, the polled one stays");
  assert.deepEqual(reg.poll(ida), []);
  assert.ok(!a.isClosed());
  reg[Symbol.dispose]();
});
