import assert from "node:assert/strict";
import { test } from "node:test";
import { createLogger } from "../log.ts";
import type { StartOptions } from "./process-handle.ts";
import { ProcessTable } from "./process-table.ts";

const quiet = createLogger("error", () => {});

function sleeper(): StartOptions {
  return {
    plan: { argv: ["/bin/sleep", "1000"], env: { PATH: "/usr/bin:/bin" }, cwd: "/", uid: undefined, gid: undefined },
    config: { cmd: "/bin/sleep", args: ["1000"], envs: {}, cwd: undefined },
    tag: undefined,
    pty: undefined,
    stdin: false,
    timeoutMs: undefined,
  } as StartOptions;
}

test("close() while starts are spawning signals the late processes too (none outlives the table)", async () => {
  const table = new ProcessTable(quiet);
  // Each start passed the closed check and is awaiting its spawn when close() begins.
  const starts = Array.from({ length: 8 }, () => table.start(sleeper()));
  const closed = table.close(200);
  const handles = await Promise.all(starts);
  await closed;
  const survivors = handles.filter((h) => !h.status);
  for (const h of survivors) process.kill(-h.pid, "SIGKILL"); // clean up before failing
  assert.deepEqual(
    survivors.map((h) => h.pid),
    [],
    "processes whose spawn was in flight at close() were never signalled",
  );
  await assert.rejects(table.start(sleeper()), /shutting down/);
});
