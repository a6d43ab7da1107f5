/**
 * The boot order of the background loops (daemon.ts starts them 100 ms after listening): nothing
 * runs until startLoops(), and a snapshot prepared before then keeps them stopped until the
 * restore starts every loop.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { test } from "node:test";
import { createLogger } from "../log.ts";
import { createCgroups } from "../process/cgroups.ts";
import { parseLifecycleConfig } from "./lifecycle-config.ts";
import { createVmLifecycle } from "./vm-lifecycle.ts";

const log = createLogger("error", () => {});

/** A forward address no interface has (TEST-NET-1): the forwarder runs but binds nothing. */
async function lifecycle() {
  const lc = parseLifecycleConfig({ forwardAddress: "192.0.2.1" }, { ENVD_MEMINFO_PATH: "/proc/meminfo", ENVD_DROP_CACHES_PATH: "/nonexistent/drop_caches" }, true);
  if ("error" in lc) throw new Error(lc.error);
  const cgroups = createCgroups({ root: "/nonexistent", disabled: true, log });
  const server = { connections: new Map<Socket, unknown>(), keepAlive: true, closeIdleConnections() {} };
  return createVmLifecycle({ lifecycle: lc, log, path: process.env.PATH ?? "", server, cgroups, setClock: async () => {} });
}

test("the port forwarder and the reclaimer wait for startLoops()", async () => {
  await using vm = await lifecycle();
  assert.equal(vm.ports.running, false);
  assert.equal(vm.reclaimer.running, false);
  vm.startLoops();
  assert.equal(vm.ports.running, true);
  assert.equal(vm.reclaimer.running, true);
});

test("a snapshot prepared before startLoops() keeps them stopped; the restore starts them", async () => {
  await using vm = await lifecycle();
  await vm.loops.stopAll();
  vm.startLoops();
  assert.equal(vm.ports.running, false);
  assert.equal(vm.reclaimer.running, false);
  vm.loops.startAll();
  assert.equal(vm.ports.running, true);
  assert.equal(vm.reclaimer.running, true);
});
