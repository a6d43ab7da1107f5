import assert from "node:assert/strict";
import { test } from "node:test";
import { parseLifecycleConfig } from "./lifecycle-config.ts";

test("defaults: 169.254.0.21, reaper auto, reclaim at 80 %, fsfreeze on / only inside a VM", () => {
  const c = parseLifecycleConfig({}, {}, false);
  assert.ok(!("error" in c));
  assert.deepEqual(c.forwardAddresses, ["169.254.0.21"]);
  assert.equal(c.reaper, "auto");
  assert.equal(c.reclaimThresholdPct, 80);
  assert.equal(c.fsFreezePath, "/");
  const notFc = parseLifecycleConfig({}, {}, true);
  assert.ok(!("error" in notFc));
  assert.equal(notFc.fsFreezePath, undefined);
  const knob = parseLifecycleConfig({}, { ENVD_FSFREEZE_PATH: "/mnt/x" }, true);
  assert.ok(!("error" in knob));
  assert.equal(knob.fsFreezePath, "/mnt/x");
});

test("flags: address lists (IPv4, IPv6, empty), reaper modes, thresholds; bad values are errors", () => {
  const c = parseLifecycleConfig({ forwardAddress: "10.0.0.2, fd00::2", reaper: "on", reclaimThreshold: "90" }, {}, false);
  assert.ok(!("error" in c));
  assert.deepEqual(c.forwardAddresses, ["10.0.0.2", "fd00::2"]);
  assert.equal(c.reaper, "on");
  assert.equal(c.reclaimThresholdPct, 90);
  const off = parseLifecycleConfig({ forwardAddress: "" }, {}, false);
  assert.ok(!("error" in off));
  assert.deepEqual(off.forwardAddresses, []);
  assert.deepEqual(parseLifecycleConfig({ forwardAddress: "localhost" }, {}, false), { error: 'invalid value "localhost" for flag -forward-address' });
  assert.deepEqual(parseLifecycleConfig({ reaper: "always" }, {}, false), { error: 'invalid value "always" for flag -reaper' });
  assert.deepEqual(parseLifecycleConfig({ reclaimThreshold: "101" }, {}, false), { error: 'invalid value "101" for flag -reclaim-threshold' });
  assert.deepEqual(parseLifecycleConfig({ reclaimThreshold: "x" }, {}, false), { error: 'invalid value "x" for flag -reclaim-threshold' });
});
