import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { type BackgroundLoop, LoopRegistry } from "./loop-registry.ts";
import { type ConnectionControl, SnapshotLifecycle } from "./snapshot-lifecycle.ts";

const log = createLogger("error", () => {});

function fakeSocket(): Socket & { destroyed: boolean } {
  const s = { destroyed: false, destroy() { s.destroyed = true; return s; } };
  return s as unknown as Socket & { destroyed: boolean };
}

function fakeServer(): ConnectionControl & { idleCloses: number; connections: Map<Socket, unknown> } {
  const server = {
    connections: new Map<Socket, unknown>(),
    keepAlive: true,
    idleCloses: 0,
    closeIdleConnections() {
      server.idleCloses++;
    },
  };
  return server;
}

function fakeLoop(name: string, events: string[], stopDelayMs = 0): BackgroundLoop {
  return {
    name,
    start: () => void events.push(`start ${name}`),
    stop: () =>
      stopDelayMs > 0
        ? new Promise<void>((r) => setTimeout(() => r(void events.push(`stop ${name}`)), stopDelayMs))
        : void events.push(`stop ${name}`),
  };
}

function setup() {
  const events: string[] = [];
  const loops = new LoopRegistry(log);
  loops.register(fakeLoop("scanner", events));
  loops.register(fakeLoop("sampler", events, 20));
  const server = fakeServer();
  const lifecycle = new SnapshotLifecycle({
    log,
    loops,
    server,
    sync: async () => void events.push("sync"),
    dropCaches: async (reason) => void events.push(`drop ${reason}`),
    reseed: () => {
      events.push("reseed");
      return { hwrngBytes: 0, mixed: true, crngReseeded: true };
    },
    resyncClock: async () => {
      events.push("clock");
      return { source: "none", stepped: false };
    },
  });
  return { events, loops, server, lifecycle };
}

describe("LoopRegistry", () => {
  test("stopAll waits for every loop; startAll starts them again; a loop registered while quiesced is stopped", async () => {
    const events: string[] = [];
    const loops = new LoopRegistry(log);
    loops.register(fakeLoop("a", events, 10));
    const b = loops.register(fakeLoop("b", events));
    assert.deepEqual(await loops.stopAll(), ["a", "b"]);
    assert.deepEqual(events.sort(), ["stop a", "stop b"]);
    assert.equal(loops.quiesced, true);
    loops.register(fakeLoop("late", events));
    assert.ok(events.includes("stop late"));
    b[Symbol.dispose]();
    assert.deepEqual(loops.startAll(), ["a", "late"]);
    assert.equal(loops.quiesced, false);
  });

  test("a loop whose stop throws does not block the others", async () => {
    const loops = new LoopRegistry(log);
    loops.register({ name: "bad", start() {}, stop: () => Promise.reject(new Error("boom")) });
    loops.register({ name: "good", start() {}, stop() {} });
    assert.deepEqual(await loops.stopAll(), ["good"]);
  });
});

describe("SnapshotLifecycle", () => {
  test("prepare: keep-alive off, idle connections closed, loops stopped, then sync (and drop when asked)", async () => {
    const { events, server, lifecycle } = setup();
    server.connections.set(fakeSocket(), {});
    const r = await lifecycle.prepare("snapshot", { dropCaches: true });
    assert.equal(server.keepAlive, false);
    assert.equal(server.idleCloses, 1);
    assert.deepEqual(r.loopsStopped, ["sampler", "scanner"]);
    assert.equal(r.connections, 1);
    assert.deepEqual(events.slice(-2), ["sync", "drop snapshot"], "sync after the loops stopped");
    assert.ok(events.indexOf("stop sampler") < events.indexOf("sync"));
    assert.equal(lifecycle.pending, "snapshot");
  });

  test("restore runs once: pre-snapshot connections closed (not the caller's, not new ones), reseed, clock, loops", async () => {
    const { events, server, lifecycle } = setup();
    const stale = fakeSocket();
    const caller = fakeSocket();
    server.connections.set(stale, {});
    server.connections.set(caller, {});
    await lifecycle.prepare("snapshot");
    const fresh = fakeSocket();
    server.connections.set(fresh, {});
    events.length = 0;
    const [a, b] = await Promise.all([lifecycle.onHostContact("health", caller), lifecycle.onHostContact("init")]);
    assert.equal(a, b, "concurrent contacts share one restore");
    assert.equal(a?.trigger, "health");
    assert.equal(a?.closedConnections, 1);
    assert.equal(stale.destroyed, true);
    assert.equal(caller.destroyed, false);
    assert.equal(fresh.destroyed, false);
    assert.equal(server.keepAlive, true);
    assert.deepEqual(events, ["reseed", "clock", "start scanner", "start sampler"]);
    assert.equal(lifecycle.pending, undefined);
    assert.equal(await lifecycle.onHostContact("health"), undefined, "only once");
    assert.equal(lifecycle.restores, 1);
  });

  test("after /freeze only /init restores; /unfreeze resumes without closing anything", async () => {
    const { events, server, lifecycle } = setup();
    const s = fakeSocket();
    server.connections.set(s, {});
    await lifecycle.prepare("freeze");
    assert.equal(await lifecycle.onHostContact("health"), undefined);
    assert.equal(lifecycle.pending, "freeze");
    events.length = 0;
    await lifecycle.resume();
    assert.equal(s.destroyed, false);
    assert.equal(server.keepAlive, true);
    assert.deepEqual(events.sort(), ["start sampler", "start scanner"]);
    assert.equal(lifecycle.pending, undefined);
    await lifecycle.prepare("freeze");
    assert.equal((await lifecycle.onHostContact("init"))?.trigger, "init");
    assert.equal(s.destroyed, true);
  });

  test("a wall-clock jump is the restore signal while prepared, and otherwise only reseeds", async (t) => {
    const { events, lifecycle } = setup();
    let now = 1_000_000;
    t.mock.method(Date, "now", () => now);
    lifecycle.startClockWatch();
    lifecycle.stopClockWatch();
    now += 100; // small drift: nothing
    lifecycle.checkClock();
    assert.equal(lifecycle.clockJumps, 0);
    now += 60_000;
    lifecycle.checkClock();
    assert.equal(lifecycle.clockJumps, 1);
    assert.deepEqual(events, ["reseed"]);
    await lifecycle.prepare("snapshot");
    now += 3_600_000;
    lifecycle.checkClock();
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(lifecycle.lastRestore?.trigger, "clock-jump");
    assert.equal(lifecycle.pending, undefined);
  });
});
