/**
 * InitService on a new `lifecycle_id` (Wrenn sends a new one on boot and after every resume), with
 * fakes for everything it drives: a new id restarts port forwarding (`onLifecycle`), steps the
 * clock whenever the guest is behind at all and asks chrony to step; the same id again is an
 * ordinary /init (the clock only beyond the 50 ms rule, no restart, no chrony). The wall clock is
 * pinned (Date.now), so "behind by 10 ms" is exact.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { EnvdError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { Session } from "../session.ts";
import type { UserDb } from "../users/user-db.ts";
import type { CaInstaller } from "./ca-bundle.ts";
import type { InitRequest } from "./init-request.ts";
import { InitService } from "./init-service.ts";
import { flavorNames, internalEnvNames } from "./vm-config.ts";
import type { VolumeMounter } from "./volume-mounts.ts";

const NOW_MS = 1_800_000_000_000;
const MS = 1_000_000n;
const nowNs = BigInt(NOW_MS) * MS;
const realNow = Date.now;

beforeEach(() => {
  Date.now = () => NOW_MS;
});
afterEach(() => {
  Date.now = realNow;
});

function request(fields: Partial<InitRequest>): InitRequest {
  return {
    envVars: undefined,
    accessToken: undefined,
    timestampNs: undefined,
    defaultUser: undefined,
    defaultWorkdir: undefined,
    hyperloopIP: undefined,
    volumeMounts: undefined,
    lifecycleID: undefined,
    caBundle: undefined,
    sandboxId: undefined,
    templateId: undefined,
    proxyDomain: undefined,
    ...fields,
  };
}

function service() {
  const events: string[] = [];
  const clockTargets: bigint[] = [];
  const names = flavorNames("wrenn");
  const init = new InitService({
    session: new Session(),
    users: { lookup: (name: string) => (name === "root" ? { name: "root", uid: 0, gid: 0, home: "/root" } : undefined) } as unknown as UserDb,
    log: createLogger("error", () => {}),
    names,
    internalNames: internalEnvNames(names),
    mmdsTokenHash: undefined,
    setClock: async (ns) => {
      clockTargets.push(ns);
      events.push("clock");
    },
    ca: { install: () => events.push("ca") } as unknown as CaInstaller,
    mounts: { mountAll: async () => void events.push("mounts") } as unknown as VolumeMounter,
    hostsFile: "/nonexistent/hosts",
    shutdownSignal: new AbortController().signal,
    onLifecycle: async (id) => void events.push(`lifecycle ${id}`),
    stepChrony: () => void events.push("chrony"),
  });
  const post = (fields: Partial<InitRequest>) => init.handle(request(fields), { signal: new AbortController().signal, receivedAt: process.hrtime.bigint() });
  return { post, events, clockTargets };
}

test("a new lifecycle_id restarts forwarding, steps the clock and asks chrony to step; the same id again does none of it", async () => {
  const { post, events, clockTargets } = service();

  // Boot: the guest is 10 ms behind the host. A new lifecycle steps (behind at all)…
  assert.equal(await post({ lifecycleID: "life-1", timestampNs: nowNs + 10n * MS }), "applied");
  assert.deepEqual(events, ["lifecycle life-1", "clock", "chrony"]);
  assert.ok((clockTargets[0] as bigint) >= nowNs + 10n * MS, "stepped to the host's time (plus the handling time)");

  // …the same id again (20 ms behind: under the ordinary 50 ms rule) is an ordinary /init.
  assert.equal(await post({ lifecycleID: "life-1", timestampNs: nowNs + 20n * MS }), "applied");
  assert.deepEqual(events, ["lifecycle life-1", "clock", "chrony"], "no restart, no step, no chrony for a repeated id");

  // Resume: a new id, behind by 30 ms: everything again, once.
  assert.equal(await post({ lifecycleID: "life-2", timestampNs: nowNs + 30n * MS }), "applied");
  assert.deepEqual(events, ["lifecycle life-1", "clock", "chrony", "lifecycle life-2", "clock", "chrony"]);

  // No lifecycle_id at all (E2B's orchestrator): never a lifecycle change.
  assert.equal(await post({ timestampNs: nowNs + 40n * MS }), "applied");
  assert.equal(events.length, 6);
});

test("a repeated lifecycle_id still follows the ordinary clock rule (> 50 ms behind), without restart or chrony", async () => {
  const { post, events } = service();
  await post({ lifecycleID: "life-1", timestampNs: nowNs });
  // The guest is not behind (the host's time equals ours): no step, but restart and chrony.
  assert.deepEqual(events, ["lifecycle life-1", "chrony"]);
  await post({ lifecycleID: "life-1", timestampNs: nowNs + 60n * MS });
  assert.deepEqual(events, ["lifecycle life-1", "chrony", "clock"]);
});

test("a new lifecycle_id never steps the clock back by a little, and bad input starts no lifecycle", async () => {
  const { post, events } = service();
  // The guest is 2 s ahead (under 5 s): a new lifecycle does not move the clock back.
  await post({ lifecycleID: "life-1", timestampNs: nowNs - 2_000n * MS });
  assert.deepEqual(events, ["lifecycle life-1", "chrony"]);
  // An unknown default user is a 400 with nothing applied, the new lifecycle included.
  await assert.rejects(post({ lifecycleID: "life-2", timestampNs: nowNs + 10n * MS, defaultUser: "nobody-here" }), EnvdError);
  assert.deepEqual(events, ["lifecycle life-1", "chrony"]);
  // So the same id, well formed, is still new.
  await post({ lifecycleID: "life-2", timestampNs: nowNs + 10n * MS });
  assert.deepEqual(events, ["lifecycle life-1", "chrony", "lifecycle life-2", "clock", "chrony"]);
});
