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
