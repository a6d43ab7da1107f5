import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Signal, type StreamInputRequestSchema } from "../../src/gen/process/process_pb.js";

type InputInit = MessageInitShape<typeof StreamInputRequestSchema>;
import { RUNTIMES, eventually, runToEnd, startDaemon } from "./harness.ts";

const bash = (script: string) => ({ cmd: "/bin/bash", args: ["-c", script] });

async function expectCode(p: Promise<unknown>, code: Code, message?: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    const e = ConnectError.from(err);
    assert.equal(Code[e.code], Code[code], `got ${Code[e.code]}: ${e.rawMessage}`);
    if (message) assert.match(e.rawMessage, message);
    return true;
  });
}

/** Drains a Start/Connect stream into a simple record, in the background. */
function collect(stream: AsyncIterable<{ event?: { event: { case: string | undefined; value?: unknown } } | undefined }>) {
  const out = { pid: 0, stdout: "", stderr: "", pty: "", kinds: [] as string[], end: undefined as undefined | { exitCode: number; exited: boolean; status: string; error?: string | undefined } };
  const done = (async () => {
    for await (const res of stream) {
      const ev = res.event?.event;
      if (!ev?.case) continue;
      out.kinds.push(ev.case);
      const v = ev.value as never as Record<string, unknown>;
      if (ev.case === "start") out.pid = v.pid as number;
      if (ev.case === "data") {
        const o = v.output as { case: "stdout" | "stderr" | "pty"; value: Uint8Array };
        out[o.case] += Buffer.from(o.value).toString();
      }
      if (ev.case === "end") out.end = v as never;
    }
    return out;
  })();
  return { out, done };
}

for (const runtime of RUNTIMES) {
  describe(`Process service [${runtime}]`, () => {
    test("args, env and cwd reach the program unchanged; the daemon's environment does not leak", async () => {
      await using envd = await startDaemon({ runtime, env: { SECRET_DAEMON_VAR: "leak" } });
      const r = await runToEnd(envd.process, {
        process: {
          cmd: "/bin/sh",
          args: ["-c", 'printf "%s|" "$@"; echo; echo "$FOO"; pwd; env | grep -c SECRET_DAEMON_VAR || true', "argv0", "a b", "'q'", "$HOME", ""],
          envs: { FOO: "bar baz" },
          cwd: "/tmp",
        },
        stdin: false,
      });
      assert.equal(r.stdout, "a b|'q'|$HOME||\nbar baz\n/tmp\n0\n");
      assert.equal(r.end?.exitCode, 0);
    });

    test("a missing executable, a bad cwd, an unknown user and an empty command are clear errors on Start", async () => {
      await using envd = await startDaemon({ runtime });
      await expectCode(runToEnd(envd.process, { process: { cmd: "no-such-program-xyz" } }), Code.InvalidArgument, /executable file not found/);
      await expectCode(runToEnd(envd.process, { process: { cmd: "/nonexistent/bin" } }), Code.InvalidArgument, /no such executable/);
      await expectCode(runToEnd(envd.process, { process: { cmd: "/bin/true", cwd: "/nonexistent" } }), Code.InvalidArgument, /cwd '\/nonexistent' does not exist/);
      await expectCode(runToEnd(envd.process, { process: { cmd: "" } }), Code.InvalidArgument);
      await expectCode(runToEnd(envd.process, {}), Code.InvalidArgument);
      await expectCode(
        runToEnd(envd.process, { process: { cmd: "/bin/true" } }, { headers: { authorization: `Basic ${Buffer.from("nobody-xyz:").toString("base64")}` } }),
        Code.Unauthenticated,
        /invalid username: 'nobody-xyz'/,
      );
      await expectCode(runToEnd(envd.process, { process: { cmd: "/bin/true" }, pty: { size: { cols: 0, rows: 10 } } }), Code.InvalidArgument);
      // the daemon is still fine
      const r = await runToEnd(envd.process, { process: bash("echo ok") });
      assert.equal(r.stdout, "ok\n");
    });

    test("cwd ~/x resolves against the user's home", async () => {
      await using envd = await startDaemon({ runtime });
      const r = await runToEnd(envd.process, { process: { cmd: "/bin/pwd", cwd: "~" } });
      assert.equal(r.stdout, "/root\n");
    });

    test("stdin is /dev/null unless asked; with stdin, SendInput and CloseStdin deliver data and EOF", async () => {
      await using envd = await startDaemon({ runtime });
      const devnull = await runToEnd(envd.process, { process: bash("cat; echo rc=$?"), stdin: false });
      assert.equal(devnull.stdout, "rc=0\n");

      const s = collect(envd.process.start({ process: bash("cat; echo done"), stdin: true, tag: "catter" }));
      await eventually(() => s.out.pid, "start event");
      await envd.process.sendInput({ process: { selector: { case: "pid", value: s.out.pid } }, input: { input: { case: "stdin", value: Buffer.from("hello ") } } });
      await envd.process.sendInput({ process: { selector: { case: "tag", value: "catter" } }, input: { input: { case: "stdin", value: Buffer.from("world\n") } } });
      await eventually(() => s.out.stdout.includes("hello world"), "echoed input");
      await envd.process.closeStdin({ process: { selector: { case: "pid", value: s.out.pid } } });
      const out = await s.done;
      assert.equal(out.stdout, "hello world\ndone\n");
      assert.equal(out.end?.exitCode, 0);

      // input to a process started without stdin is refused; closing it is fine
      const n = collect(envd.process.start({ process: bash("sleep 30"), stdin: false }));
      await eventually(() => n.out.pid, "start event");
      const sel = { selector: { case: "pid" as const, value: n.out.pid } };
      await expectCode(envd.process.sendInput({ process: sel, input: { input: { case: "stdin", value: Buffer.from("x") } } }), Code.FailedPrecondition, /stdin/);
      await envd.process.closeStdin({ process: sel });
      await envd.process.closeStdin({ process: sel });
      await expectCode(envd.process.sendInput({ process: sel, input: { input: { case: "pty", value: Buffer.from("x") } } }), Code.FailedPrecondition, /PTY/);
      await expectCode(envd.process.sendInput({ process: sel, input: {} }), Code.InvalidArgument);
      await expectCode(envd.process.update({ process: sel, pty: { size: { cols: 10, rows: 10 } } }), Code.FailedPrecondition, /no PTY/);
      await envd.process.update({ process: sel }); // no pty: a no-op
      await envd.process.sendSignal({ process: sel, signal: Signal.SIGKILL });
      const killed = await n.done;
      assert.deepEqual(
        { exitCode: killed.end?.exitCode, exited: killed.end?.exited, status: killed.end?.status, error: killed.end?.error },
        { exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" },
      );
    });

    test("StreamInput writes in order after a start message; data before start is refused", async () => {
      await using envd = await startDaemon({ runtime });
      // StreamInput is a client stream: it needs HTTP/2 or the Connect client's buffered form; connect-node buffers it over HTTP/1.1.
      const s = collect(envd.process.start({ process: bash("head -c 12; echo"), stdin: true }));
      await eventually(() => s.out.pid, "start event");
      const sel = { selector: { case: "pid" as const, value: s.out.pid } };
      async function* input(): AsyncGenerator<InputInit> {
        yield { event: { case: "start" as const, value: { process: sel } } };
        yield { event: { case: "keepalive" as const, value: {} } };
        for (const part of ["abc", "def", "ghi", "jkl"]) yield { event: { case: "data" as const, value: { input: { input: { case: "stdin" as const, value: Buffer.from(part) } } } } };
      }
      await envd.process.streamInput(input());
      const out = await s.done;
      assert.equal(out.stdout, "abcdefghijkl\n");
      async function* bad(): AsyncGenerator<InputInit> {
        yield { event: { case: "data" as const, value: { input: { input: { case: "stdin" as const, value: Buffer.from("x") } } } } };
      }
      await expectCode(envd.process.streamInput(bad()), Code.InvalidArgument, /start/);
    });

    test("the end comes from the exit even when a background child keeps the pipes open", async () => {
      await using envd = await startDaemon({ runtime });
      const r = await runToEnd(envd.process, { process: bash("sleep 60 & echo started; exit 5") });
      // the orphaned sleep is still in the shell's process group: end it, so the daemon leaves nothing behind
      try {
        process.kill(-r.pid, "SIGKILL");
      } catch {
        // already gone
      }
      assert.equal(r.stdout, "started\n");
      assert.equal(r.end?.exitCode, 5);
      assert.equal(r.end?.status, "exit status 5");
      const list = await envd.process.list({});
      assert.equal(list.processes.length, 0);
    });

    test("SendSignal SIGTERM reaches the whole process group; unspecified signals are refused", async () => {
      await using envd = await startDaemon({ runtime });
      const s = collect(envd.process.start({ process: bash("sleep 100 & sleep 100 & echo $!; wait"), tag: "tree" }));
      await eventually(() => s.out.stdout.length > 0, "child pid");
      const grandchild = Number(s.out.stdout.trim());
      await expectCode(envd.process.sendSignal({ process: { selector: { case: "tag", value: "tree" } }, signal: Signal.UNSPECIFIED }), Code.Unimplemented);
      await envd.process.sendSignal({ process: { selector: { case: "tag", value: "tree" } }, signal: Signal.SIGTERM });
      const out = await s.done;
      assert.equal(out.end?.status, "signal: terminated");
      assert.equal(out.end?.exitCode, -1);
      await eventually(() => {
        try {
          return readFileSync(`/proc/${grandchild}/stat`, "utf8").split(" ")[2] === "Z";
        } catch {
          return true;
        }
      }, "grandchild gone");
    });

    test("List shows live processes with their config and tag, and drops them once they exit", async () => {
      await using envd = await startDaemon({ runtime });
      const a = collect(envd.process.start({ process: { cmd: "/bin/sleep", args: ["30"], envs: { K: "V" } }, tag: "sleeper" }));
      const b = collect(envd.process.start({ process: { cmd: "/bin/sleep", args: ["30"], cwd: "/tmp" } }));
      await eventually(() => a.out.pid && b.out.pid, "both started");
      const list = await envd.process.list({});
      const byPid = new Map(list.processes.map((p) => [p.pid, p]));
      assert.equal(byPid.get(a.out.pid)?.tag, "sleeper");
      assert.deepEqual(byPid.get(a.out.pid)?.config?.envs, { K: "V" });
      assert.deepEqual(byPid.get(a.out.pid)?.config?.args, ["30"]);
      assert.equal(byPid.get(a.out.pid)?.config?.cwd, undefined);
      assert.equal(byPid.get(b.out.pid)?.config?.cwd, "/tmp");
      assert.equal(byPid.get(b.out.pid)?.tag, undefined);
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: a.out.pid } }, signal: Signal.SIGKILL });
      await a.done;
      const after = await envd.process.list({});
      assert.deepEqual(after.processes.map((p) => p.pid), [b.out.pid]);
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: b.out.pid } }, signal: Signal.SIGKILL });
      await b.done;
    });

    test("unknown pids and tags are NotFound everywhere; an empty selector is InvalidArgument", async () => {
      await using envd = await startDaemon({ runtime });
      const pid = { selector: { case: "pid" as const, value: 999999 } };
      const tag = { selector: { case: "tag" as const, value: "nope" } };
      await expectCode(runToEnd(envd.process as never, {} as never).then(() => undefined), Code.InvalidArgument);
      for (const sel of [pid, tag]) {
        await expectCode(envd.process.sendSignal({ process: sel, signal: Signal.SIGKILL }), Code.NotFound, /not found/);
        await expectCode(envd.process.sendInput({ process: sel, input: { input: { case: "stdin", value: Buffer.from("x") } } }), Code.NotFound);
        await expectCode(envd.process.update({ process: sel }), Code.NotFound);
        await expectCode(envd.process.closeStdin({ process: sel }), Code.NotFound);
        await expectCode(collect(envd.process.connect({ process: sel })).done, Code.NotFound);
      }
      await expectCode(envd.process.sendSignal({ signal: Signal.SIGKILL }), Code.InvalidArgument);
      await expectCode(collect(envd.process.connect({})).done, Code.InvalidArgument);
    });

    test("a client that disconnects does not kill the process; Connect reattaches by pid and tag and replays what was missed", async () => {
      await using envd = await startDaemon({ runtime });
      const ac = new AbortController();
      const first = collect(envd.process.start({ process: bash("echo one; read x < /tmp/envd-never 2>/dev/null; for i in 1 2 3 4 5; do echo tick$i; sleep 0.2; done; echo last"), tag: "ticker" }, { signal: ac.signal }));
      await eventually(() => first.out.stdout.includes("one"), "first output");
      ac.abort();
      await assert.rejects(first.done);
      const list = await envd.process.list({});
      assert.ok(list.processes.some((p) => p.pid === first.out.pid), "still running after the client left");
      const again = await collect(envd.process.connect({ process: { selector: { case: "tag", value: "ticker" } } })).done;
      assert.equal(again.kinds[0], "start");
      assert.equal(again.pid, first.out.pid);
      // history replay: everything, including what was printed while nobody listened
      assert.match(again.stdout, /^one\ntick1\ntick2\ntick3\ntick4\ntick5\nlast\n$/);
      assert.equal(again.end?.exitCode, 0);
      // the end stays available to late Connect calls, by pid and by tag
      for (const sel of [{ case: "pid" as const, value: first.out.pid }, { case: "tag" as const, value: "ticker" }]) {
        const late = await collect(envd.process.connect({ process: { selector: sel } })).done;
        assert.equal(late.kinds[0], "start");
        assert.equal(late.kinds.at(-1), "end");
        assert.equal(late.end?.exitCode, 0);
        assert.match(late.stdout, /last\n$/);
      }
      // ended processes take no input or signals
      await expectCode(envd.process.sendSignal({ process: { selector: { case: "pid", value: first.out.pid } }, signal: Signal.SIGKILL }), Code.NotFound);
    });

    test("several subscribers each receive every chunk, in order", async () => {
      await using envd = await startDaemon({ runtime });
      const s = collect(envd.process.start({ process: bash("read go; seq 1 20000"), stdin: true }));
      await eventually(() => s.out.pid, "start");
      const sel = { selector: { case: "pid" as const, value: s.out.pid } };
      const c1 = collect(envd.process.connect({ process: sel }));
      const c2 = collect(envd.binary.process.connect({ process: sel }));
      await eventually(() => c1.out.pid && c2.out.pid, "connect streams started");
      await envd.process.sendInput({ process: sel, input: { input: { case: "stdin", value: Buffer.from("go\n") } } });
      const expected = `${Array.from({ length: 20000 }, (_, i) => i + 1).join("\n")}\n`;
      for (const r of [await s.done, await c1.done, await c2.done]) {
        assert.equal(r.stdout, expected);
        assert.equal(r.end?.exitCode, 0);
      }
    });

    // Backlogged output is coalesced (issue 15.3): events are at most 1 MiB (E2B envd cuts at 32 KiB).
    test("100 MB of stdout arrives complete, in order, in data events of at most 1 MiB", async () => {
      await using envd = await startDaemon({ runtime });
      let total = 0;
      let max = 0;
      let ok = true;
      for await (const res of envd.binary.process.start({ process: bash("head -c 100000000 /dev/zero | tr '\\0' 'x'") })) {
        const ev = res.event?.event;
        if (ev?.case === "data" && ev.value.output.case === "stdout") {
          const v = ev.value.output.value;
          if (ev.value.offset !== BigInt(total)) ok = false;
          total += v.byteLength;
          max = Math.max(max, v.byteLength);
          if (v.some((b) => b !== 0x78)) ok = false;
        }
      }
      assert.equal(total, 100_000_000);
      assert.ok(max <= 1024 * 1024, `largest data event ${max}`);
      assert.ok(ok);
    });

    test("Connect-Timeout-Ms on Start bounds the process's lifetime", async () => {
      await using envd = await startDaemon({ runtime });
      const s = collect(envd.process.start({ process: bash("echo up; sleep 30"), tag: "limited" }, { timeoutMs: 1500 }));
      await expectCode(s.done, Code.DeadlineExceeded);
      assert.equal(s.out.stdout, "up\n");
      const ended = await collect(envd.process.connect({ process: { selector: { case: "tag", value: "limited" } } })).done;
      assert.equal(ended.end?.status, "signal: killed");
    });

    test("keepalive events arrive at the interval asked for while the process is silent", async () => {
      await using envd = await startDaemon({ runtime });
      const r = await runToEnd(envd.process, { process: bash("sleep 2.5; echo hi") }, { headers: { "keepalive-ping-interval": "1" } });
      assert.ok(r.kinds.filter((k) => k === "keepalive").length >= 2, r.kinds.join(","));
      assert.equal(r.kinds[0], "start");
      assert.equal(r.kinds.at(-1), "end");
      assert.equal(r.stdout, "hi\n");
    });

    test("PTY: initial size, input echo, resize via Update, and a normal end at exit", async () => {
      await using envd = await startDaemon({ runtime });
      const s = collect(envd.process.start({ process: { cmd: "/bin/bash", args: ["-i"], envs: { TERM: "xterm", PS1: "$ " } }, pty: { size: { cols: 123, rows: 45 } }, tag: "shell" }));
      await eventually(() => s.out.pid, "start");
      const sel = { selector: { case: "tag" as const, value: "shell" } };
      const send = (text: string) => envd.process.sendInput({ process: sel, input: { input: { case: "pty", value: Buffer.from(text) } } });
      await send("stty size\n");
      await eventually(() => s.out.pty.includes("45 123"), "initial size");
      await envd.process.update({ process: sel, pty: { size: { cols: 80, rows: 24 } } });
      await send("stty size\n");
      await eventually(() => s.out.pty.includes("24 80"), "resized");
      await expectCode(envd.process.sendInput({ process: sel, input: { input: { case: "stdin", value: Buffer.from("x") } } }), Code.FailedPrecondition);
      await expectCode(envd.process.closeStdin({ process: sel }), Code.FailedPrecondition, /Ctrl\+D/);
      await expectCode(envd.process.update({ process: sel, pty: { size: { cols: 0, rows: 0 } } }), Code.InvalidArgument);
      await send("exit 7\n");
      const out = await s.done;
      assert.equal(out.stdout, "");
      assert.equal(out.end?.exitCode, 7);
      assert.equal(out.end?.exited, true);
    });

    test("PTY: a background job holding the terminal does not hang the end", async () => {
      await using envd = await startDaemon({ runtime });
      const r = await runToEnd(envd.process, { process: bash("sleep 60 & echo bg; exit 2") , pty: { size: { cols: 80, rows: 24 } } });
      assert.match(r.pty, /bg/);
      assert.equal(r.end?.exitCode, 2);
    });
  });
}
