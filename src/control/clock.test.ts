import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CLOCK_REALTIME, loadLibc } from "../sys/libc.ts";
import { createClockSetter, decodeTimespec, encodeTimespec, epochArgument, parseRfc3339Ns, shouldSetClock } from "./clock.ts";

const S = 1_000_000_000n;
const MS = 1_000_000n;

test("parseRfc3339Ns keeps nanoseconds and applies offsets", () => {
  assert.equal(parseRfc3339Ns("1970-01-01T00:00:00Z"), 0n);
  assert.equal(parseRfc3339Ns("2026-05-01T12:00:00.123456789Z"), BigInt(Date.UTC(2026, 4, 1, 12)) * MS + 123_456_789n);
  assert.equal(parseRfc3339Ns("2026-05-01T12:00:00.5Z"), BigInt(Date.UTC(2026, 4, 1, 12)) * MS + 500_000_000n);
  assert.equal(parseRfc3339Ns("2026-05-01T14:30:00+02:30"), BigInt(Date.UTC(2026, 4, 1, 12)) * MS);
  assert.equal(parseRfc3339Ns("2026-05-01t12:00:00-01:00"), BigInt(Date.UTC(2026, 4, 1, 13)) * MS);
});

test("parseRfc3339Ns rejects what is not RFC 3339", () => {
  for (const bad of [
    "",
    "yesterday",
    "2026-05-01",
    "2026-05-01 12:00:00Z",
    "2026-05-01T12:00:00",
    "2026-02-30T00:00:00Z",
    "2026-13-01T00:00:00Z",
    "2026-05-01T24:00:00Z",
    "2026-05-01T12:00:00.1234567891Z",
    "2026-05-01T12:00:00+2:00",
    "0050-01-01T00:00:00Z",
  ]) {
    assert.equal(parseRfc3339Ns(bad), undefined, bad);
  }
});

test("the clock is set only beyond 50 ms behind or 5 s ahead", () => {
  const host = 1_000n * S;
  assert.equal(shouldSetClock(host, host), false);
  assert.equal(shouldSetClock(host - 50n * MS, host), false);
  assert.equal(shouldSetClock(host - 51n * MS, host), true);
  assert.equal(shouldSetClock(host + 5n * S, host), false);
  assert.equal(shouldSetClock(host + 5n * S + 1n, host), true);
});

test("epochArgument pads the nanoseconds", () => {
  assert.equal(epochArgument(1_700_000_000n * S + 5n), "@1700000000.000000005");
});

test("a configured clock command receives the target and its failure is reported", async () => {
  const dir = mkdtempSync(join(tmpdir(), "clock-"));
  const out = join(dir, "args");
  const ok = join(dir, "ok.sh");
  writeFileSync(ok, `#!/bin/sh\necho "$@" > ${out}\n`);
  chmodSync(ok, 0o755);
  await createClockSetter(ok, "/usr/bin:/bin")(1_700_000_000n * S + 123n);
  assert.equal(readFileSync(out, "utf8"), "@1700000000.000000123\n");
  const bad = join(dir, "bad.sh");
  writeFileSync(bad, "#!/bin/sh\necho 'not permitted' >&2\nexit 1\n");
  chmodSync(bad, 0o755);
  await assert.rejects(createClockSetter(bad, "/usr/bin:/bin")(0n), /not permitted/);
});

test("the timespec layout matches what this machine's clock_gettime writes (read only, never set)", (t) => {
  assert.equal(decodeTimespec(encodeTimespec(1_700_000_000n * S + 123_456_789n)), 1_700_000_000n * S + 123_456_789n);
  const libc = loadLibc();
  if (!libc) {
    t.skip("no FFI in this runtime");
    return;
  }
  const buf = new Uint8Array(16);
  assert.equal(libc.clockGettime(CLOCK_REALTIME, buf), 0);
  const diff = decodeTimespec(buf) - BigInt(Date.now()) * MS;
  assert.ok(diff > -5n * S && diff < 5n * S, `clock_gettime decoded ${diff} ns away from Date.now()`);
});

test("clock_settime gets the target as a timespec; a failure falls back to date", async () => {
  const calls: bigint[] = [];
  const fake = (result: number) =>
    ({
      clockSettime: (clockid: number, ts: Uint8Array) => {
        assert.equal(clockid, CLOCK_REALTIME);
        calls.push(decodeTimespec(ts));
        return result;
      },
    }) as unknown as Parameters<typeof createClockSetter>[2];
  await createClockSetter(undefined, "/usr/bin:/bin", fake(0))(1_700_000_000n * S + 7n);
  assert.deepEqual(calls, [1_700_000_000n * S + 7n]);
  // EPERM from clock_settime, and no `date` on this PATH either: the failure is reported.
  await assert.rejects(createClockSetter(undefined, "/nonexistent", fake(-1))(0n), /date failed/);
  assert.equal(calls.length, 2);
});

test("a new lifecycle steps the clock when the guest is behind at all, never back by a few ms", async () => {
  const { shouldStepOnNewLifecycle } = await import("./clock.ts");
  const host = 1_764_669_600_000_000_000n;
  assert.equal(shouldStepOnNewLifecycle(host - 2_000_000n, host), true, "2 ms behind");
  assert.equal(shouldStepOnNewLifecycle(host - 30_000_000n, host), true, "30 ms behind (below the 50 ms of a plain /init)");
  assert.equal(shouldStepOnNewLifecycle(host - 500_000n, host), false, "0.5 ms: within what a reading is off by");
  assert.equal(shouldStepOnNewLifecycle(host + 3_000_000n, host), false, "a little ahead: never moved back");
  assert.equal(shouldStepOnNewLifecycle(host + 6_000_000_000n, host), true, "over 5 s ahead");
});
