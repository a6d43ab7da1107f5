import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import type { Client } from "@connectrpc/connect";
import type { ConnectResponse, Process, StartResponse } from "../../src/gen/process/process_pb.js";
import { descendantsOf, eventually, RUNTIMES, startDaemon } from "./harness.ts";

interface Collected {
  pid: number;
  kinds: string[];
  output: string;
  end: { exitCode: number; exited: boolean; status: string } | undefined;
  /** Resolves when the stream finished; rejects if it ended with an error. */
  done: Promise<void>;
}

/** Consumes a Start or Connect stream in the background, recording what arrives. */
function collect(stream: AsyncIterable<StartResponse | ConnectResponse>): Collected {
  const c: Collected = { pid: 0, kinds: [], output: "", end: undefined, done: Promise.resolve() };
  c.done = (async () => {
    for await (const res of stream) {
      const ev = res.event?.event;
      if (!ev?.case) continue;
      c.kinds.push(ev.case);
      if (ev.case === "start") c.pid = ev.value.pid;
      if (ev.case === "data" && ev.value.output.value && c.output.length < 4096) c.output += Buffer.from(ev.value.output.value).toString();
      if (ev.case === "end") c.end = { exitCode: ev.value.exitCode, exited: ev.value.exited, status: ev.value.status };
    }
  })();
  return c;
}

/** `pid:starttime` of a process, or undefined when it is gone or a zombie (dead, not yet reaped). */
function liveIdentity(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" || fields[0] === "X" ? undefined : `${pid}:${fields[19]}`;
  } catch {
    return undefined;
  }
}

function startStream(client: Client<typeof Process>, script: string, pty = false) {
  return collect(
    client.start({
      process: { cmd: "/bin/bash", args: pty ? [] : ["-c", script] },
      ...(pty ? { pty: { size: { cols: 80, rows: 24 } } } : {}),
      stdin: pty,
    }),
  );
}

for (const runtime of RUNTIMES) {
  describe(`boot command and shutdown [${runtime}]`, () => {
    test("-cmd starts a tracked process tagged startCmd that List shows and Connect attaches to", async () => {
      const cmd = 'echo "$(id -un) $(pwd) boot-$((40+2))"; exec cat';
      await using envd = await startDaemon({ runtime, args: ["--cmd", cmd] });
      const listed = (await envd.process.list({})).processes;
      assert.equal(listed.length, 1);
      const p = listed[0];
      assert.equal(p?.tag, "startCmd");
      assert.equal(p?.config?.cmd, "/bin/bash");
      assert.deepEqual(p?.config?.args, ["-l", "-c", cmd]);
      const stream = collect(envd.process.connect({ process: { selector: { case: "tag", value: "startCmd" } } }));
      await eventually(() => stream.output.includes("root /root boot-42\n"), "boot output through Connect");
      assert.equal(stream.pid, p?.pid);
      await envd.process.sendInput({ process: { selector: { case: "tag", value: "startCmd" } }, input: { input: { case: "stdin", value: Buffer.from("ping\n") } } });
      await eventually(() => stream.output.includes("ping\n"), "stdin echoed");
      await envd.process.closeStdin({ process: { selector: { case: "pid", value: p?.pid ?? 0 } } });
      await stream.done;
      assert.deepEqual(stream.end, { exitCode: 0, exited: true, status: "exit status 0" });
      assert.equal((await envd.process.list({})).processes.length, 0);
    });

    test("a -cmd that fails does not take the daemon down", async () => {
      await using envd = await startDaemon({ runtime, args: ["--cmd", "echo bad >&2; exit 7"] });
      await eventually(() => envd.logs.some((l) => l.msg === "process ended" && l.tag === "startCmd"), "start command ended");
      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal((await envd.process.list({})).processes.length, 0);
    });

    test("SIGTERM while commands stream: no new connections, every stream ends with an end event, TERM then KILL, exit 0, no orphans", async () => {
      await using envd = await startDaemon({ runtime });
      const ticking = startStream(envd.process, "while true; do echo tick; sleep 0.05; done");
      const flood = startStream(envd.process, "yes e2e-flood");
      const stubborn = startStream(envd.process, "trap '' TERM; sleep 1000 & while true; do echo alive; sleep 0.1; done");
      const terminal = startStream(envd.process, "", true);
      const binary = collect(envd.binary.process.start({ process: { cmd: "/bin/bash", args: ["-c", "while true; do echo bin; sleep 0.05; done"] } }));
      const all = [ticking, flood, stubborn, terminal, binary];
      await eventually(() => all.every((s) => s.pid > 0) && [ticking, flood, stubborn, binary].every((s) => s.output.length > 0), "all streams flowing");
      // Identified with their start time: pids are reused quickly on a busy machine.
      const children = descendantsOf(envd.pid).map(liveIdentity).filter((id) => id !== undefined);
      assert.ok(children.length >= 5, `children: ${children}`);

      const exit = envd.stop("SIGTERM");
      // Stop accepting comes first: new connections are refused while processes are still ending.
      await eventually(async () => {
        try {
          await envd.fetch("/health");
          return false;
        } catch {
          return true;
        }
      }, "connections refused");
      assert.equal(stubborn.kinds.includes("end"), false, "the process that ignores SIGTERM is still in its grace period");

      await Promise.all(all.map((s) => s.done));
      for (const s of all) assert.equal(s.kinds.at(-1), "end", `stream of ${s.pid}: ${s.kinds.slice(-3)}`);
      assert.equal(ticking.end?.status, "signal: terminated");
      assert.equal(flood.end?.status, "signal: terminated");
      assert.equal(binary.end?.status, "signal: terminated");
      assert.equal(stubborn.end?.status, "signal: killed");
      assert.equal(terminal.end?.exited, false); // an interactive shell ignores SIGTERM: killed
      assert.equal(await exit, 0);
      // close() ran to its end (Bun once exited half-way through, on an empty event loop).
      await eventually(() => envd.logs.some((l) => l.msg === "stopped"), "the stopped log line");
      assert.deepEqual(descendantsOf(envd.pid), []);
      const survivors = children.filter((id) => liveIdentity(Number(id.split(":")[0])) === id);
      assert.deepEqual(survivors, []);
    });

    test("SIGINT shuts down the same way, and more signals do not cut the shutdown short", async () => {
      await using envd = await startDaemon({ runtime });
      const stubborn = startStream(envd.process, "trap '' TERM INT; while true; do echo alive; sleep 0.1; done");
      await eventually(() => stubborn.output.length > 0, "output");
      const exit = envd.stop("SIGINT");
      await eventually(() => envd.logs.some((l) => l.msg === "shutting down"), "shutdown started");
      // An impatient supervisor: repeated signals must not kill the daemon before its children.
      envd.child.kill("SIGINT");
      envd.child.kill("SIGTERM");
      await stubborn.done;
      assert.equal(stubborn.end?.status, "signal: killed");
      assert.equal(await exit, 0);
      assert.ok(envd.logs.some((l) => l.msg === "shutting down" && l.signal === "SIGINT"));
    });
  });
}
