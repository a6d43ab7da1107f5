/**
 * Command output as log records (issue 16.5): with a log collector named by the metadata, each
 * line of a command's output is one `process_output` record; a collector that is down never holds
 * the command back.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { startFakeMmds, tempDir } from "./control-fakes.ts";
import { eventually, RUNTIMES, runToEnd, startDaemon } from "./harness.ts";

const FC = ["--isnotfc=false"];
const sh = (script: string) => ({ cmd: "/bin/sh", args: ["-c", script] });

for (const runtime of RUNTIMES) {
  describe(`command output as log records [${runtime}]`, () => {
    test("each line of stdout and stderr is a process_output record with the pid, after the collector is known", async () => {
      await using mmds = await startFakeMmds({ instanceID: "sbx-out", envID: "tmpl-out" });
      mmds.data = { instanceID: "sbx-out", envID: "tmpl-out", address: `${mmds.url}/logs` };
      await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
      await eventually(() => mmds.logs.some((l) => (JSON.parse(l.body) as { msg: string }).msg === "listening"), "the collector is in use");
      const r = await runToEnd(envd.binary.process, { process: sh("printf 'one\\ntwo\\n'; echo oops >&2; printf tail"), stdin: false });
      assert.equal(r.stdout, "one\ntwo\ntail");
      const records = () =>
        mmds.logs.map((l) => JSON.parse(l.body) as Record<string, unknown>).filter((o) => o.event_type === "process_output" && o.pid === r.pid);
      await eventually(() => records().length === 4, "four records");
      const got = records().map((o) => [o.stream, o.message]);
      assert.deepEqual(
        got.filter(([s]) => s === "stdout"),
        [
          ["stdout", "one"],
          ["stdout", "two"],
          ["stdout", "tail"],
        ],
      );
      assert.deepEqual(got.filter(([s]) => s === "stderr"), [["stderr", "oops"]]);
      for (const o of records()) {
        assert.equal(o.instanceID, "sbx-out");
        assert.equal(o.envID, "tmpl-out");
        assert.equal(o.level, "info");
      }
    });

    test("a collector that is down does not hold the command back or the daemon", async () => {
      await using mmds = await startFakeMmds({});
      mmds.data = { instanceID: "sbx-down", envID: "t", address: "http://127.0.0.1:9/logs" }; // discard port: refused
      await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
      await eventually(() => mmds.requests.some((q) => q.method === "GET"), "metadata read");
      const r = await runToEnd(envd.process, { process: sh("seq 1 300000"), stdin: false });
      assert.equal(r.end?.exitCode, 0);
      assert.equal(r.stdout.length, Array.from({ length: 300000 }, (_, i) => `${i + 1}\n`).join("").length);
      assert.equal((await envd.fetch("/health")).status, 204);
    });
  });
}
