/**
 * ProcessTable on its own, with real (small) child processes: what stays reachable after an exit
 * and for how long, what a reused tag does, and what close() promises (every process signalled,
 * SIGKILL after the grace, nothing started after it, nothing retained). The spawn-in-flight race
 * is in process-table-shutdown.test.ts; here, a failing spawn racing close().
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { Code } from "../errors.ts";
import { createLogger } from "../log.ts";
import type { ProcessHandle, StartOptions } from "./process-handle.ts";
import { ProcessTable } from "./process-table.ts";

const quiet = createLogger("error", () => {});

function sh(script: string, tag?: string): StartOptions {
  return {
    plan: { argv: ["/bin/sh", "-c", script], env: { PATH: "/usr/bin:/bin" }, cwd: "/", uid: undefined, gid: undefined },
    config: { cmd: "/bin/sh", args: ["-c", script], envs: {}, cwd: undefined },
    tag,
    pty: undefined,
    stdin: false,
    timeoutMs: undefined,
  } as StartOptions;
}

const codeOf = (fn: () => unknown): Code | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return codeOfError(err);
  }
};

const codeOfError = (err: unknown): Code | undefined => (err as { code?: Code } | undefined)?.code;

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Whether `pid` ignores SIGTERM (bit 15 of SigIgn in /proc/<pid>/status). */
function ignoresTerm(pid: number): boolean {
  try {
    const hex = /^SigIgn:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? "0";
    return ((BigInt(`0x${hex}`) >> 14n) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** Kills what a failed test left behind. */
function reap(handles: ProcessHandle[]): void {
  for (const h of handles) {
    if (h.status) continue;
    try {
      process.kill(-h.pid, "SIGKILL");
    } catch {}
  }
}

describe("ProcessTable", () => {
  test("an ended process leaves the list at once, stays findable by pid and tag for the retention, then is not_found", async () => {
    const table = new ProcessTable(quiet, 300);
    const h = await table.start(sh("exit 3", "job"));
    try {
      const status = await h.exited;
      assert.equal(status.exitCode, 3);
      await until(() => table.list().length === 0, "the exit to leave the list");
      assert.equal(table.find({ pid: h.pid }), h);
      assert.equal(table.find({ tag: "job" }), h);
      assert.equal(table.find({ pid: h.pid }).status?.exitCode, 3, "the end status is kept");
      assert.equal(codeOf(() => table.findLive({ pid: h.pid })), Code.NotFound, "an ended process takes no input or signals");
      assert.equal(codeOf(() => table.findLive({ tag: "job" })), Code.NotFound);
      await until(() => codeOf(() => table.find({ pid: h.pid })) === Code.NotFound, "the retention to pass");
      assert.equal(codeOf(() => table.find({ tag: "job" })), Code.NotFound);
    } finally {
      reap([h]);
      await table.close(100);
    }
  });

  test("a new process with the tag of a retained one replaces it; the newest live process wins a tag lookup", async () => {
    const table = new ProcessTable(quiet, 60_000);
    const handles: ProcessHandle[] = [];
    try {
      const old = await table.start(sh("exit 0", "web"));
      handles.push(old);
      await old.exited;
      await until(() => table.list().length === 0, "the first to end");
      const fresh = await table.start(sh("exec sleep 1000", "web"));
      handles.push(fresh);
      assert.equal(table.find({ tag: "web" }), fresh);
      assert.equal(codeOf(() => table.find({ pid: old.pid })), Code.NotFound, "the retained record with the same tag is gone");
      const newer = await table.start(sh("exec sleep 1000", "web"));
      handles.push(newer);
      assert.equal(table.findLive({ tag: "web" }), newer);
      assert.deepEqual(
        table.list().map((h) => h.pid),
        [fresh.pid, newer.pid],
        "oldest first",
      );
      assert.equal(codeOf(() => table.find({ pid: 999_999_999 })), Code.NotFound);
    } finally {
      reap(handles);
      await table.close(100);
    }
  });

  test("packEnded() replaces an ended process nobody reads with a compact record that answers as it did, until the retention ends", async () => {
    const table = new ProcessTable(quiet, 3_000);
    const h = await table.start(sh("printf abc; printf de >&2; printf fgh; exit 3", "job"));
    const reader = h.subscribe(true);
    try {
      await h.exited;
      await until(() => table.list().length === 0, "the exit to leave the list");
      const replayOf = (sub: { take(): unknown; [Symbol.dispose](): void }) => {
        using _ = sub;
        const items: string[] = [];
        for (let it = sub.take() as { kind: string; chunk?: { stream: string; offset: number; data: Buffer }; end?: unknown }; it; it = sub.take() as typeof it) {
          items.push(it.kind === "data" ? `${it.chunk?.stream}@${it.chunk?.offset}:${it.chunk?.data}` : `end:${JSON.stringify(it.end)}`);
        }
        return items;
      };
      const before = replayOf(h.subscribe(true));
      const resumedBefore = replayOf(h.subscribe(true, { stdout: 4, stderr: 2, pty: 0 }));
      const textOf = (items: string[], stream: string) =>
        items.filter((i) => i.startsWith(`${stream}@`)).map((i) => i.slice(i.indexOf(":") + 1)).join("");
      assert.deepEqual([textOf(before, "stdout"), textOf(before, "stderr")], ["abcfgh", "de"]);
      assert.deepEqual([textOf(resumedBefore, "stdout"), textOf(resumedBefore, "stderr")], ["gh", ""]);

      assert.equal(table.packEnded(), 0, "not while a reader is attached");
      assert.equal(table.find({ pid: h.pid }), h);
      reader[Symbol.dispose]();
      assert.equal(table.packEnded(), 1);
      assert.equal(table.packEnded(), 0, "packed once");
      assert.equal(h.output.retainedBytes, 0, "whoever still holds the handle holds no second copy");

      const record = table.find({ pid: h.pid });
      assert.notEqual(record, h);
      assert.equal(table.find({ tag: "job" }), record);
      assert.deepEqual(record.status, h.status);
      assert.deepEqual(replayOf(record.subscribe(true)), before);
      assert.deepEqual(replayOf(record.subscribe(true, { stdout: 4, stderr: 2, pty: 0 })), resumedBefore);
      assert.deepEqual(replayOf(record.subscribe(false)), [before.at(-1)], "no replay: only the end");
      assert.throws(() => record.subscribe(true, { stdout: 9, stderr: 0, pty: 0 }), (err: unknown) => codeOfError(err) === Code.OutOfRange);
      await assert.rejects(record.writeStdin(Buffer.from("x")), /process has already exited/);
      assert.throws(() => record.writePty(Buffer.from("x")), /the process has no PTY/);
      assert.equal(codeOf(() => table.findLive({ pid: h.pid })), Code.NotFound);

      await until(() => codeOf(() => table.find({ pid: h.pid })) === Code.NotFound, "the retention to pass");
      assert.equal(codeOf(() => table.find({ tag: "job" })), Code.NotFound);
    } finally {
      reader[Symbol.dispose]();
      reap([h]);
      await table.close(100);
    }
  });

  test("a packed record keeps its deadline: it goes when the handle would have gone, on the table's monotonic clock", async () => {
    let skew = 0;
    const table = new ProcessTable(quiet, 60_000, () => performance.now() + skew);
    const h = await table.start(sh("printf x", "late"));
    try {
      await h.exited;
      await until(() => table.list().length === 0, "the exit to leave the list");
      skew = 59_900; // 59.9 of its 60 s are over
      assert.equal(table.packEnded(), 1);
      assert.notEqual(table.find({ tag: "late" }), h);
      const before = table.releasedOutputBytes;
      await until(() => codeOf(() => table.find({ tag: "late" })) === Code.NotFound, "the record to go at its original deadline");
      assert.equal(table.releasedOutputBytes - before, 1, "its one byte of output is counted as let go");
    } finally {
      reap([h]);
      await table.close(100);
    }
  });

  test("packEnded() copies within its limits: a record with more output than the per-record bound, or past the pass's budget, stays a handle", async () => {
    const table = new ProcessTable(quiet, 60_000);
    const handles: ProcessHandle[] = [];
    try {
      const big = await table.start(sh("head -c 5000 /dev/zero"));
      const small = await table.start(sh("printf hi"));
      handles.push(big, small);
      await Promise.all([big.exited, small.exited]);
      await until(() => table.list().length === 0, "both to end");
      assert.ok(big.output.retainedBytes > 5000 && small.output.retainedBytes < 2048, `${big.output.retainedBytes} ${small.output.retainedBytes}`);

      assert.equal(table.packEnded({ recordBytes: 2048, passBytes: 1 << 20 }), 1);
      assert.equal(table.find({ pid: big.pid }), big, "over the per-record bound: still the handle");
      assert.notEqual(table.find({ pid: small.pid }), small);
      assert.equal(table.packEnded({ recordBytes: 1 << 20, passBytes: 4096 }), 0, "over what is left of the pass");
      assert.equal(table.find({ pid: big.pid }), big);
      assert.equal(table.packEnded(), 1);
      const record = table.find({ pid: big.pid });
      assert.notEqual(record, big);
      using sub = record.subscribe(true);
      let bytes = 0;
      for (let it = sub.take(); it; it = sub.take()) if (it.kind === "data") bytes += it.chunk.data.byteLength;
      assert.equal(bytes, 5000);
    } finally {
      reap(handles);
      await table.close(100);
    }
  });

  test("close() ends every process (SIGKILL for one that ignores SIGTERM), drops what is retained, refuses new starts; it is idempotent", async () => {
    const table = new ProcessTable(quiet, 60_000);
    const handles: ProcessHandle[] = [];
    try {
      const ended = await table.start(sh("exit 0", "done"));
      handles.push(ended);
      await ended.exited;
      await until(() => table.list().length === 0, "the short one to end");
      assert.equal(table.packEnded(), 1);
      const polite = await table.start(sh("exec sleep 1000"));
      const stubborn = await table.start(sh('trap "" TERM; while :; do sleep 1; done'));
      handles.push(polite, stubborn);
      await until(() => ignoresTerm(stubborn.pid), "the trap to be installed");

      await table.close(200);
      assert.equal(polite.status?.status, "signal: terminated");
      assert.equal(stubborn.status?.status, "signal: killed", "SIGKILL once the grace passed");
      assert.deepEqual(table.list(), []);
      assert.equal(codeOf(() => table.find({ tag: "done" })), Code.NotFound, "nothing is retained after close");
      await assert.rejects(table.start(sh("exit 0")), (err: unknown) => codeOfError(err) === Code.Unavailable);
      await table.close(200);
      await table[Symbol.asyncDispose]();
    } finally {
      reap(handles);
    }
  });

  test("a start whose spawn fails while close() runs rejects with its own error, and close still completes", async () => {
    const table = new ProcessTable(quiet);
    const live = await table.start(sh("exec sleep 1000"));
    try {
      const bad = {
        ...sh("unused"),
        plan: { argv: ["/nonexistent/envd-test-binary"], env: {}, cwd: "/", uid: undefined, gid: undefined },
      } as StartOptions;
      const failing = table.start(bad);
      const closed = table.close(200);
      await assert.rejects(failing, (err: unknown) => codeOfError(err) === Code.InvalidArgument);
      await closed;
      assert.ok(live.status, "the live process ended");
      assert.deepEqual(table.list(), []);
    } finally {
      reap([live]);
    }
  });
});
