/**
 * Process errors say what happened: input on a process in the wrong state is failed_precondition,
 * a spawn that runs out of resources is resource_exhausted, a Start past its deadline starts
 * nothing, and a command started with a deadline is killed when it passes.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { eventually, RUNTIMES, startDaemon } from "./harness.ts";

const codeOf = (err: unknown) => (err instanceof ConnectError ? Code[err.code] : `not a ConnectError: ${String(err)}`);

function envelope(json: unknown): Uint8Array {
  const payload = Buffer.from(JSON.stringify(json));
  const out = Buffer.alloc(5 + payload.length);
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}

for (const runtime of RUNTIMES) {
  describe(`process errors (${runtime})`, () => {
    test("input and terminal calls on a process in the wrong state are failed_precondition (JSON and binary)", async () => {
      await using envd = await startDaemon({ runtime });
      for (const client of [envd.process, envd.binary.process]) {
        const started = async (req: Parameters<typeof client.start>[0]) => {
          const stream = client.start(req)[Symbol.asyncIterator]();
          const first = await stream.next();
          const ev = first.value?.event?.event;
          assert.equal(ev?.case, "start");
          return { pid: ev.value.pid, stream };
        };
        const pty = await started({ process: { cmd: "/bin/cat" }, pty: { size: { cols: 80, rows: 24 } } });
        const pipes = await started({ process: { cmd: "/bin/cat" }, stdin: true });
        const noStdin = await started({ process: { cmd: "/bin/sleep", args: ["30"] }, stdin: false });
        const sel = (pid: number) => ({ selector: { case: "pid" as const, value: pid } });
        const cases: [string, () => Promise<unknown>][] = [
          ["stdin to a PTY process", () => client.sendInput({ process: sel(pty.pid), input: { input: { case: "stdin", value: Buffer.from("x") } } })],
          ["pty input to a pipe process", () => client.sendInput({ process: sel(pipes.pid), input: { input: { case: "pty", value: Buffer.from("x") } } })],
          ["resize a pipe process", () => client.update({ process: sel(pipes.pid), pty: { size: { cols: 10, rows: 10 } } })],
          ["close stdin of a PTY", () => client.closeStdin({ process: sel(pty.pid) })],
          ["stdin to a process started without it", () => client.sendInput({ process: sel(noStdin.pid), input: { input: { case: "stdin", value: Buffer.from("x") } } })],
        ];
        for (const [what, call] of cases) {
          const err = await call().then(() => undefined, (e: unknown) => e);
          assert.equal(codeOf(err), "FailedPrecondition", what);
        }
        await client.closeStdin({ process: sel(pipes.pid) });
        const afterClose = await client
          .sendInput({ process: sel(pipes.pid), input: { input: { case: "stdin", value: Buffer.from("x") } } })
          .then(() => undefined, (e: unknown) => e);
        // cat ends at EOF: either stdin is closed (failed_precondition) or the process is gone (not_found).
        assert.ok(["FailedPrecondition", "NotFound"].includes(codeOf(afterClose)), codeOf(afterClose));
        for (const p of [pty, noStdin]) await client.sendSignal({ process: sel(p.pid), signal: 9 });
        for (const p of [pty, pipes, noStdin]) for (let r = await p.stream.next(); !r.done; r = await p.stream.next());
        // Ended (its record is kept 30 s): input and resize say so, they do not claim it is unknown.
        const ended: [string, () => Promise<unknown>][] = [
          ["stdin to an ended process", () => client.sendInput({ process: sel(noStdin.pid), input: { input: { case: "stdin", value: Buffer.from("x") } } })],
          ["pty input to an ended PTY", () => client.sendInput({ process: sel(pty.pid), input: { input: { case: "pty", value: Buffer.from("x") } } })],
        ];
        for (const [what, call] of ended) {
          const err = await call().then(() => undefined, (e: unknown) => e);
          assert.equal(codeOf(err), "FailedPrecondition", what);
        }
      }
      assert.deepEqual(envd.logs.filter((l) => l.level === "error"), []);
    });

    test("a Start whose deadline passed before its body arrived spawns nothing and answers deadline_exceeded", async () => {
      await using envd = await startDaemon({ runtime });
      const marker = `/tmp/envd-deadline-${process.pid}-${runtime}`;
      // Raw HTTP/1.1, so the headers (and with them the deadline) reach the daemon long before the body.
      const socket = connect(envd.port, "127.0.0.1");
      await once(socket, "connect");
      const chunks: Buffer[] = [];
      socket.on("data", (d: Buffer) => chunks.push(d));
      const closed = once(socket, "close");
      socket.write(
        "POST /process.Process/Start HTTP/1.1\r\nHost: envd\r\nContent-Type: application/connect+json\r\n" +
          "Connect-Timeout-Ms: 100\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      );
      // Whatever the daemon does at the deadline, it happens before this: the body comes 500 ms late.
      await new Promise((r) => setTimeout(r, 500));
      const body = envelope({ process: { cmd: "/bin/sh", args: ["-c", `touch ${marker}; sleep 30`] } });
      socket.write(`${body.length.toString(16)}\r\n`);
      socket.write(body);
      socket.write("\r\n0\r\n\r\n");
      await closed;
      const text = Buffer.concat(chunks).toString();
      assert.match(text, /"code":"deadline_exceeded"/);
      // A later start is logged after any earlier one would have been: the log shows only it.
      for await (const _ of envd.process.start({ process: { cmd: "/bin/true" } }));
      await eventually(() => envd.logs.some((l) => l.msg === "process started" && l.cmd === "/bin/true"), "the later start");
      assert.deepEqual(envd.logs.filter((l) => l.msg === "process started").map((l) => l.cmd), ["/bin/true"]);
      assert.equal(existsSync(marker), false);
    });

    test("a command started with a deadline is killed when it passes", async () => {
      await using envd = await startDaemon({ runtime });
      let pid = 0;
      const err = await (async () => {
        for await (const res of envd.process.start({ process: { cmd: "/bin/sleep", args: ["600"] } }, { timeoutMs: 1500 })) {
          if (res.event?.event.case === "start") pid = res.event.event.value.pid;
        }
      })().then(() => undefined, (e: unknown) => e);
      assert.equal(codeOf(err), "DeadlineExceeded");
      assert.ok(pid > 0);
      await eventually(() => !existsSync(`/proc/${pid}`) || /^\S+ \S+ Z/.test(""), "the process is gone");
      await eventually(async () => (await envd.process.list({})).processes.length === 0, "List is empty");
    });

    test("a spawn that runs out of file descriptors is resource_exhausted, and the daemon recovers", async () => {
      await using envd = await startDaemon({ runtime, wrap: ["prlimit", "--nofile=96:96", "--"] });
      const streams: AsyncIterator<unknown>[] = [];
      let failure: unknown;
      for (let i = 0; i < 60 && failure === undefined; i++) {
        const it = envd.process.start({ process: { cmd: "/bin/cat" }, stdin: true })[Symbol.asyncIterator]();
        try {
          await it.next();
          streams.push(it);
        } catch (err) {
          failure = err;
        }
      }
      assert.ok(failure !== undefined, "the descriptor limit was never reached");
      assert.equal(codeOf(failure), "ResourceExhausted", String(failure));
      const list = await envd.process.list({});
      for (const p of list.processes) await envd.process.sendSignal({ process: { selector: { case: "pid", value: p.pid } }, signal: 9 });
      for (const it of streams) for (let r = await it.next(); !r.done; r = await it.next());
      const again = envd.process.start({ process: { cmd: "/bin/true" } });
      for await (const _ of again);
    });
  });
}
