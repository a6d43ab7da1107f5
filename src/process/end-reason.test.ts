/**
 * Why a command ended (issue 18.1): each reason from end-reason.ts, with the cgroup files and
 * /proc/vmstat faked in a temp dir (the probe reads them as it would the real ones).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { type EndFacts, endReason, oomProbe } from "./end-reason.ts";

const MIB = 2 ** 20;
const root = mkdtempSync(join(tmpdir(), "envd-end-reason-"));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fake cgroup directory with the given files (absent when undefined). */
function cgroup(files: { oomKill?: number; max?: string; current?: number }): string {
  const dir = join(root, `cg-${n++}`);
  mkdirSync(dir);
  if (files.oomKill !== undefined) setOomKill(dir, files.oomKill);
  if (files.max !== undefined) writeFileSync(join(dir, "memory.max"), `${files.max}\n`);
  if (files.current !== undefined) writeFileSync(join(dir, "memory.current"), `${files.current}\n`);
  return dir;
}
function setOomKill(dir: string, count: number): void {
  writeFileSync(join(dir, "memory.events"), `low 0\nhigh 0\nmax 17\noom 2\noom_kill ${count}\noom_group_kill 0\n`);
}
/** A fake /proc/vmstat. */
function vmstat(count: number, file = join(root, `vmstat-${n++}`)): string {
  writeFileSync(file, `nr_free_pages 12345\npgfault 999\noom_kill ${count}\nthp_fault_alloc 0\n`);
  return file;
}

const noVmstat = join(root, "no-such-vmstat");
const facts = (f: Partial<EndFacts>): EndFacts => ({ signal: undefined, timedOut: false, timeoutMs: undefined, sentByEnvd: new Set(), oom: undefined, ...f });

describe("OOM", () => {
  test("the cgroup's memory.events oom_kill rose between start and the SIGKILL: the limit in words", () => {
    const dir = cgroup({ oomKill: 3, max: String(512 * MIB), current: 100 * MIB });
    const oom = oomProbe(dir, vmstat(50));
    assert.equal(oom.kills, 3, "read at start");
    setOomKill(dir, 4);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: memory limit 512 MiB reached");
  });

  test("a limit that is not whole MiB is shown to one decimal", () => {
    const dir = cgroup({ oomKill: 0, max: String(1.5 * MIB + 1) });
    const oom = oomProbe(dir, noVmstat);
    setOomKill(dir, 1);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: memory limit 1.5 MiB reached");
  });

  test("the cgroup's count rose but it has no limit (memory.max 'max'): the sandbox ran out of memory", () => {
    const dir = cgroup({ oomKill: 0, max: "max" });
    const oom = oomProbe(dir, noVmstat);
    setOomKill(dir, 1);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: the sandbox ran out of memory");
  });

  test("the cgroup's count did not rise (another process's SIGKILL): from outside, even if the system-wide count rose", () => {
    const dir = cgroup({ oomKill: 5, max: String(512 * MIB), current: 10 * MIB });
    const vm = vmstat(7);
    const oom = oomProbe(dir, vm);
    vmstat(8, vm);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by signal SIGKILL from outside");
  });

  test("without a cgroup: /proc/vmstat's oom_kill rising means OOM, a steady one does not", () => {
    const vm = vmstat(7);
    const oom = oomProbe(undefined, vm);
    assert.equal(oom.kills, 7);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by signal SIGKILL from outside");
    vmstat(8, vm);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: the sandbox ran out of memory");
  });

  test("a cgroup without memory.events (no memory controller) falls back to /proc/vmstat", () => {
    const dir = cgroup({});
    const vm = vmstat(0);
    const oom = oomProbe(dir, vm);
    assert.equal(oom.kills, 0);
    vmstat(1, vm);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: the sandbox ran out of memory");
  });

  test("no counter anywhere: a SIGKILL is from outside", () => {
    const oom = oomProbe(undefined, noVmstat);
    assert.equal(oom.kills, undefined);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by signal SIGKILL from outside");
  });

  test("SIGKILL while the cgroup is at its limit (memory.current ≥ memory.max), read when the end is handled", () => {
    const dir = cgroup({ oomKill: 2, max: String(256 * MIB), current: 10 * MIB });
    const oom = oomProbe(dir, noVmstat);
    assert.equal(oom.atLimit(), false);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by signal SIGKILL from outside", "below the limit");
    writeFileSync(join(dir, "memory.current"), `${256 * MIB}\n`);
    assert.equal(oom.atLimit(), true);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: memory limit 256 MiB reached", "at the limit");
    writeFileSync(join(dir, "memory.current"), `${256 * MIB + 4096}\n`);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by the OOM killer: memory limit 256 MiB reached", "over it");
    // Also without any oom_kill count to compare (memory.events unreadable, no vmstat).
    const bare = cgroup({ max: String(64 * MIB), current: 64 * MIB });
    const probe = oomProbe(bare, noVmstat);
    assert.equal(probe.kills, undefined);
    assert.equal(endReason(facts({ signal: "SIGKILL", oom: probe })), "killed by the OOM killer: memory limit 64 MiB reached");
  });

  test("the at-limit rule needs a limit and a reading: memory.max 'max', a missing memory.current, no cgroup", () => {
    for (const [what, dir] of [
      ["no limit", cgroup({ oomKill: 0, max: "max", current: 900 * MIB })],
      ["no memory.current", cgroup({ oomKill: 0, max: String(64 * MIB) })],
      ["no memory.max", cgroup({ oomKill: 0, current: 64 * MIB })],
      ["no cgroup", undefined],
    ] as const) {
      const oom = oomProbe(dir, noVmstat);
      assert.equal(oom.atLimit(), false, what);
      assert.equal(endReason(facts({ signal: "SIGKILL", oom })), "killed by signal SIGKILL from outside", what);
    }
  });

  test("only a SIGKILL can be the OOM killer: a SIGTERM with the count risen and memory at the limit is from outside", () => {
    const dir = cgroup({ oomKill: 0, max: String(64 * MIB), current: 64 * MIB });
    const oom = oomProbe(dir, noVmstat);
    setOomKill(dir, 1);
    assert.equal(endReason(facts({ signal: "SIGTERM", oom })), "killed by signal SIGTERM from outside");
  });

  test("a command that exited on its own has no reason, whatever the counters say", () => {
    const dir = cgroup({ oomKill: 0, max: String(64 * MIB), current: 64 * MIB });
    const oom = oomProbe(dir, noVmstat);
    setOomKill(dir, 1);
    assert.equal(endReason(facts({ signal: undefined, oom })), undefined);
  });
});

describe("deadline", () => {
  test("envd's timer sent the SIGKILL: the timeout in seconds", () => {
    assert.equal(endReason(facts({ signal: "SIGKILL", timedOut: true, timeoutMs: 60_000, sentByEnvd: new Set(["SIGKILL"]) })), "killed after its 60 s timeout");
    assert.equal(endReason(facts({ signal: "SIGKILL", timedOut: true, timeoutMs: 1500, sentByEnvd: new Set(["SIGKILL"]) })), "killed after its 1.5 s timeout");
  });

  test("the deadline wins over an OOM count that rose meanwhile", () => {
    const dir = cgroup({ oomKill: 0, max: String(64 * MIB), current: 64 * MIB });
    const oom = oomProbe(dir, noVmstat);
    setOomKill(dir, 1);
    assert.equal(endReason(facts({ signal: "SIGKILL", timedOut: true, timeoutMs: 5000, sentByEnvd: new Set(["SIGKILL"]), oom })), "killed after its 5 s timeout");
  });

  test("a timer that fired but the process died of another signal first is not the deadline", () => {
    assert.equal(endReason(facts({ signal: "SIGTERM", timedOut: true, timeoutMs: 5000, sentByEnvd: new Set(["SIGKILL"]) })), "killed by signal SIGTERM from outside");
  });
});

describe("signals", () => {
  test("a signal envd did not send: from outside, by name", () => {
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGQUIT"]) {
      assert.equal(endReason(facts({ signal, oom: oomProbe(undefined, noVmstat) })), `killed by signal ${signal} from outside`, signal);
    }
  });

  test("signals envd sent itself (SendSignal, shutdown) keep the plain status text", () => {
    for (const signal of ["SIGTERM", "SIGKILL", "SIGINT", "SIGHUP"]) {
      assert.equal(endReason(facts({ signal, sentByEnvd: new Set([signal]) })), undefined, signal);
    }
    // envd's own SIGKILL is not taken for the OOM killer, even with the count risen and memory full.
    const dir = cgroup({ oomKill: 0, max: String(64 * MIB), current: 64 * MIB });
    const oom = oomProbe(dir, noVmstat);
    setOomKill(dir, 1);
    assert.equal(endReason(facts({ signal: "SIGKILL", sentByEnvd: new Set(["SIGKILL"]), oom })), undefined);
    // Having sent one signal does not cover another.
    assert.equal(endReason(facts({ signal: "SIGTERM", sentByEnvd: new Set(["SIGINT"]) })), "killed by signal SIGTERM from outside");
  });

  test("faults a process raises against itself keep the plain status text", () => {
    for (const signal of ["SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGXCPU", "SIGXFSZ", "SIGPIPE"]) {
      assert.equal(endReason(facts({ signal, oom: oomProbe(undefined, noVmstat) })), undefined, signal);
    }
  });
});
