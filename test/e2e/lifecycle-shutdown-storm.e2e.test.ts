/**
 * Nothing outlives shutdown: the harness's "no process left behind" check is real (it can fail),
 * and SIGTERM in the middle of a storm of Start calls leaves no process behind. A SIGTERM sent
 * during start-up, or the moment the daemon says "listening", is a clean stop too.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Process } from "../../src/gen/process/process_pb.js";
import { daemonCommand, eventually, isSubreaper, RUNTIMES, type Runtime, startDaemon } from "./harness.ts";

/**
 * Starts the daemon (debug log level) and sends SIGTERM as soon as it writes the log line `msg`.
 * Resolves with how it exited and its log messages.
 */
async function terminateAt(runtime: Runtime, msg: string): Promise<{ code: number | null; signal: string | null; msgs: string[] }> {
  const { file, argv, env } = daemonCommand({ runtime, args: ["--log-level", "debug"] });
  const child = spawn(file, argv, { env, stdio: ["ignore", "pipe", "inherit"] });
  const msgs: string[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    let m: string;
    try {
      m = (JSON.parse(line) as { msg: string }).msg;
    } catch {
      return; // not a log line
    }
    msgs.push(m);
    if (m === msg) child.kill("SIGTERM");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.once("close", (c, s) => r([c, s])));
  clearTimeout(timer);
  return { code, signal, msgs };
}

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

    test("SIGTERM during start-up, or the moment it says listening: exit 0 after a clean stop, every time", async () => {
      // Ten of each: before the handlers came first, about one in five of these died of the signal.
      for (const at of ["starting", "listening"]) {
        for (let i = 0; i < 10; i++) {
          const r = await terminateAt(runtime, at);
          assert.deepEqual([r.code, r.signal], [0, null], `SIGTERM at "${at}" (#${i}): ${r.msgs.join(", ")}`);
          assert.deepEqual(r.msgs.filter((m) => m === "shutting down" || m === "stopped"), ["shutting down", "stopped"]);
          assert.ok(r.msgs.includes("listening"), "the daemon that was asked to stop while starting finishes starting first");
        }
      }
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
