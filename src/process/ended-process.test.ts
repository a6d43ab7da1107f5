/**
 * EndedProcess on its own: the input errors of an ended pipe or PTY process (as
 * ProcessHandle.writeStdin/writePty give them), what `of` refuses, and an empty output.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code } from "../errors.ts";
import { EndedProcess } from "./ended-process.ts";
import type { ExitStatus } from "./exit-status.ts";
import { OutputFanout } from "./output-fanout.ts";

const KILLED: ExitStatus = { exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" };

function ended(isPty: boolean, output = new OutputFanout<ExitStatus>()) {
  output.end(KILLED);
  const record = EndedProcess.of({ pid: 7, tag: undefined, isPty, status: KILLED, output });
  assert.ok(record);
  return record;
}

test("input to an ended record fails as the handle's does: pipes 'already exited' / 'no PTY', a PTY 'send pty input' / 'already exited'", async () => {
  const failure = (message: string) => (err: unknown) => (err as { code?: Code }).code === Code.FailedPrecondition && (err as { rawMessage?: string }).rawMessage === message;
  const pipes = ended(false);
  await assert.rejects(pipes.writeStdin(Buffer.from("x")), failure("process has already exited"));
  assert.throws(() => pipes.writePty(Buffer.from("x")), failure("the process has no PTY: send stdin instead"));
  const pty = ended(true);
  await assert.rejects(pty.writeStdin(Buffer.from("x")), failure("cannot write stdin to a PTY process: send pty input instead"));
  assert.throws(() => pty.writePty(Buffer.from("x")), failure("process has already exited"));
});

test("of() refuses a running process and one still read; a record with no output replays only the end", () => {
  const running = new OutputFanout<ExitStatus>();
  assert.equal(EndedProcess.of({ pid: 1, tag: undefined, isPty: false, status: undefined, output: running }), undefined);
  const read = new OutputFanout<ExitStatus>();
  const reader = read.subscribe({ replay: true });
  read.end(KILLED);
  assert.equal(EndedProcess.of({ pid: 1, tag: undefined, isPty: false, status: KILLED, output: read }), undefined);
  reader[Symbol.dispose]();

  const record = ended(false);
  assert.deepEqual(record.status, KILLED);
  assert.equal(record.retainedOutputBytes, 0);
  using sub = record.subscribe(true);
  assert.deepEqual(sub.offsets, { stdout: 0, stderr: 0, pty: 0 });
  assert.deepEqual(sub.take(), { kind: "end", end: KILLED });
  assert.equal(sub.take(), undefined);
});
