import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RUNTIMES, runToEnd, startDaemon } from "./harness.ts";

for (const runtime of RUNTIMES) {
  describe(`process basics [${runtime}]`, () => {
    test("Start streams start, stdout and stderr, then one end with the exit code (JSON and binary codecs)", async () => {
      await using envd = await startDaemon({ runtime });
      for (const client of [envd.process, envd.binary.process]) {
        const r = await runToEnd(client, {
          process: { cmd: "/bin/bash", args: ["-l", "-c", "echo hi; echo oops >&2; exit 3"] },
          stdin: false,
        });
        assert.ok(r.pid > 0);
        assert.equal(r.kinds[0], "start");
        assert.equal(r.kinds.at(-1), "end");
        assert.equal(r.kinds.filter((k) => k === "end").length, 1);
        assert.equal(r.stdout, "hi\n");
        assert.equal(r.stderr, "oops\n");
        assert.equal(r.end?.exitCode, 3);
        assert.equal(r.end?.exited, true);
        assert.equal(r.end?.status, "exit status 3");
        assert.equal(r.end?.error, "exit status 3");
      }
    });

    test("GET /health answers 204 with no-store", async () => {
      await using envd = await startDaemon({ runtime });
      const res = await envd.fetch("/health");
      assert.equal(res.status, 204);
      assert.equal(res.headers.get("cache-control"), "no-store");
    });
  });
}

for (const runtime of RUNTIMES) {
  describe(`e2b SDK smoke [${runtime}]`, () => {
    test("commands.run returns stdout and exit code; a failing command raises CommandExitError", async () => {
      await using envd = await startDaemon({ runtime });
      const sbx = await envd.sandbox();
      const r = await sbx.commands.run("echo hello; whoami");
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, "hello\nroot\n");
      await assert.rejects(sbx.commands.run("exit 4"), (err: Error) => {
        assert.equal(err.constructor.name, "CommandExitError");
        assert.match(err.message, /exit status 4/);
        return true;
      });
    });
  });
}
