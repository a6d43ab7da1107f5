/**
 * Nothing outlives shutdown: the harness's "no process left behind" check is real (it can fail),
 * and SIGTERM in the middle of a storm of Start calls leaves no process behind.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process } from "../../src/gen/process/process_pb.js";
import { eventually, isSubreaper, RUNTIMES, startDaemon } from "./harness.ts";

for (const runtime of RUNTIMES) {
  describe(`shutdown leaves nothing behind (${runtime})`, () => {
    test("the harness check catches a process that escaped the daemon (it can fail)", { skip: !isSubreaper && "no FFI: the test process cannot be a child subreaper" }, async () => {
      const envd = await startDaemon({ runtime });
      // setsid puts the sleep in its own session, out of reach of the daemon's process-group kill.
      const res = await envd.process.start({ process: { cmd: "/bin/sh", args: ["-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo started"] } });
      for await (const ev of res) if (ev.event?.event.case === "end") break;
      assert.equal(await envd.stop(), 0);
      const left = envd.leftBehind();
      assert.equal(left.length, 1, `left behind: ${left.join("; ")}`);
      assert.match(left[0] as string, /sleep 1000/);
    });

    test("SIGTERM during a storm of starts: every start is either refused or ends, and no process outlives the daemon", async () => {
      await using envd = await startDaemon({ runtime });
      // HTTP/2: new Starts keep arriving on the open connection after the listener stops accepting.
      const h2 = createClient(Process, createConnectTransport({ baseUrl: envd.url, httpVersion: "2" }));
      const outcomes: string[] = [];
      let started = 0;
      const one = async () => {
        try {
          for await (const res of h2.start({ process: { cmd: "/bin/sleep", args: ["1000"] } })) {
            const ev = res.event?.event;
            if (ev?.case === "start") started++;
            if (ev?.case === "end") {
              outcomes.push(`end:${ev.value.status}`);
              return;
            }
          }
          outcomes.push("no end event");
        } catch (err) {
          outcomes.push(`error:${(err as { code?: unknown }).code ?? (err as Error).message}`);
        }
      };
      // Keep 16 starts in flight until the daemon has exited, so some are spawning when close() runs.
      let exited = false;
      const worker = async () => {
        while (!exited) await one();
      };
      const storm = Array.from({ length: 16 }, worker);
      await eventually(() => started >= 16, "some processes started");
      const code = await envd.stop("SIGTERM").finally(() => {
        exited = true;
      });
      await Promise.all(storm);
      assert.equal(code, 0);
      assert.ok(started >= 10, `started ${started}`);
      assert.deepEqual(outcomes.filter((o) => o === "no end event"), []);
      assert.deepEqual(envd.leftBehind(), []);
    });
  });
}
