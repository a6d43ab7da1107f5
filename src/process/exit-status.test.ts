import assert from "node:assert/strict";
import { test } from "node:test";
import { exitStatusOf } from "./exit-status.ts";

test("exit statuses read like Go's os.ProcessState", () => {
  assert.deepEqual(exitStatusOf(0, null), { exitCode: 0, exited: true, status: "exit status 0", error: undefined });
  assert.deepEqual(exitStatusOf(2, null), { exitCode: 2, exited: true, status: "exit status 2", error: "exit status 2" });
  assert.deepEqual(exitStatusOf(null, "SIGKILL"), { exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" });
  assert.equal(exitStatusOf(null, "SIGTERM").status, "signal: terminated");
  assert.equal(exitStatusOf(null, 1).status, "signal: hangup");
  assert.equal(exitStatusOf(null, "SIGSEGV").status, "signal: segmentation fault");
});
