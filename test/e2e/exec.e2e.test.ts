/**
 * GET /exec: a command over one WebSocket, driven by a real WebSocket client (npm `ws`), against
 * the daemon under both runtimes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { postInit } from "./control-fakes.ts";
import { type Daemon, isRoot, RUNTIMES, startDaemon } from "./harness.ts";
import { closed, mustOpen, openWebSocket, settled, until, type WebSocket } from "./ws-client.ts";

const MIB = 1024 * 1024;
const TOKEN = "exec-token-0123456789";

interface Session {
  ws: WebSocket;
  texts: Record<string, unknown>[];
  out: { stdout: Buffer[]; stderr: Buffer[]; pty: Buffer[] };
  outBytes: () => number;
  /** Resolves with the close code once the daemon closed. */
  done: Promise<{ code: number; reason: string }>;
  text: (stream: "stdout" | "stderr" | "pty") => string;
  end: () => Record<string, unknown> | undefined;
}

function track(ws: WebSocket): Session {
  const texts: Record<string, unknown>[] = [];
  const out = { stdout: [] as Buffer[], stderr: [] as Buffer[], pty: [] as Buffer[] };
  let bytes = 0;
  ws.on("message", (d: Buffer, isBinary) => {
    if (!isBinary) return void texts.push(JSON.parse(d.toString()) as Record<string, unknown>);
    const stream = (["", "stdout", "stderr", "pty"] as const)[d[0] as number];
    assert.ok(stream, `unknown tag ${d[0]}`);
    out[stream].push(d.subarray(1));
    bytes += d.length - 1;
  });
  return {
    ws,
    texts,
    out,
    outBytes: () => bytes,
    done: closed(ws),
    text: (s) => Buffer.concat(out[s]).toString(),
    end: () => texts.find((t) => t.type === "end"),
  };
}

async function exec(envd: Daemon, start: unknown, headers: Record<string, string> = {}, query = ""): Promise<Session> {
  const ws = await mustOpen(envd, `/exec${query}`, headers);
  const s = track(ws);
  ws.send(JSON.stringify(start));
  return s;
}

for (const runtime of RUNTIMES) {
  describe(`GET /exec [${runtime}]`, () => {
    test("pipes 10 MiB of stdin into wc -c, EOF, exact count; start, output, end, close 1000", async () => {
      await using envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "wc", args: ["-c"] } });
      const data = randomBytes(10 * MIB);
      for (let off = 0; off < data.length; off += 100_000) s.ws.send(data.subarray(off, off + 100_000));
      s.ws.send(JSON.stringify({ type: "eof" }));
      const { code } = await s.done;
      assert.equal(code, 1000);
      assert.equal(s.text("stdout").trim(), String(10 * MIB));
      assert.equal(s.texts[0]?.type, "start");
      assert.ok(Number(s.texts[0]?.pid) > 0);
      assert.deepEqual(s.end(), { type: "end", exitCode: 0, exited: true, status: "exit status 0" });
    });

    test("stdout and stderr are tagged apart; a failing command's end event says how it ended", async () => {
      await using envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "/bin/sh", args: ["-c", "echo out; echo err >&2; exit 3"] }, stdin: false });
      await s.done;
      assert.equal(s.text("stdout"), "out\n");
      assert.equal(s.text("stderr"), "err\n");
      assert.deepEqual(s.end(), { type: "end", exitCode: 3, exited: true, status: "exit status 3", error: "exit status 3" });
    });

    test("a slow client holds the command back (not buffered in the daemon); the output arrives whole", async () => {
      await using envd = await startDaemon({ runtime });
      const dir = mkdtempSync(join(tmpdir(), "envd-exec-"));
      const file = join(dir, "out");
      try {
        const total = 64 * MIB;
        const s = await exec(envd, { process: { cmd: "/bin/sh", args: ["-c", `head -c ${total} /dev/urandom | tee ${file}`] }, stdin: false });
        await until(() => s.texts.length, (n) => n >= 1, "the start message");
        s.ws.pause(); // the client stops reading
        const size = () => (existsSync(file) ? statSync(file).size : 0);
        const stalledAt = await settled(size);
        assert.ok(stalledAt < total / 2, `the command wrote ${stalledAt / MIB} MiB of ${total / MIB} while the client read nothing`);
        s.ws.resume();
        await s.done;
        assert.equal(s.outBytes(), total);
        assert.equal(Buffer.concat(s.out.stdout).equals(readFileSync(file)), true);
        assert.equal(s.end()?.exitCode, 0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test("a command that does not read its stdin holds the client back; a signal still gets through", async () => {
      await using envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "sleep", args: ["600"] } });
      await until(() => s.texts.length, (n) => n >= 1, "the start message");
      const block = randomBytes(MIB);
      const total = 128 * MIB;
      let queued = 0;
      let flushed = 0;
      const pump = () => {
        while (queued < total && queued - flushed < 8 * MIB) {
          queued += block.length;
          s.ws.send(block, () => {
            flushed += block.length;
            pump();
          });
        }
      };
      pump();
      const stalledAt = await settled(() => flushed);
      assert.ok(stalledAt < total / 4, `the client got ${stalledAt / MIB} MiB out to a command that reads nothing`);
      // The WebSocket is not read now, so the signal goes by pid, through Connect.
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: Number(s.texts[0]?.pid) } }, signal: 9 });
      assert.equal((await s.done).code, 1000);
      assert.equal(s.end()?.status, "signal: killed");
    });

    test("a PTY: size from the request, resize, input, exit code", async () => {
      await using envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "/bin/bash", args: ["--norc", "--noprofile", "-i"] }, pty: { size: { cols: 100, rows: 30 } } });
      s.ws.send(Buffer.from("stty size\n"));
      await until(() => s.text("pty"), (t) => t.includes("30 100"), "the first size");
      s.ws.send(JSON.stringify({ type: "resize", cols: 120, rows: 40 }));
      s.ws.send(Buffer.from("stty size; exit 7\n"));
      await s.done;
      assert.match(s.text("pty"), /40 120/);
      assert.equal(s.text("stdout"), "");
      assert.equal(s.end()?.exitCode, 7);
    });

    test("signals and refused controls: the session goes on after a bad control", async () => {
      await using envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "sleep", args: ["600"] } });
      await until(() => s.texts.length, (n) => n >= 1, "the start message");
      s.ws.send("not json");
      s.ws.send(JSON.stringify({ type: "signal", signal: "SIGBOGUS" }));
      s.ws.send(JSON.stringify({ type: "resize", cols: 0, rows: 10 }));
      await until(() => s.texts.filter((t) => t.type === "error").length, (n) => n >= 3, "three error messages");
      for (const e of s.texts.filter((t) => t.type === "error")) assert.equal(e.code, "invalid_argument");
      s.ws.send(JSON.stringify({ type: "signal", signal: "TERM" }));
      assert.equal((await s.done).code, 1000);
      assert.deepEqual(s.end(), { type: "end", exitCode: -1, exited: false, status: "signal: terminated", error: "signal: terminated" });
    });

    test("bad first messages are refused with an error message and close 1008; the daemon goes on", async () => {
      await using envd = await startDaemon({ runtime });
      const cases: [unknown, RegExp][] = [
        ["{not json", /StartRequest as JSON/],
        [{ process: { cmd: "no-such-command-xyz" } }, /executable file not found/],
        [{ pty: { size: { cols: 80, rows: 24 } } }, /process is required/],
        [{ process: { cmd: "true" }, pty: { size: { cols: 0, rows: 24 } } }, /invalid PTY size 0x24/],
        [{ process: { cmd: 42 } }, /StartRequest as JSON/],
      ];
      for (const [first, message] of cases) {
        const ws = await mustOpen(envd, "/exec");
        const s = track(ws);
        ws.send(typeof first === "string" ? first : JSON.stringify(first));
        const { code } = await s.done;
        assert.equal(code, 1008, JSON.stringify(first));
        assert.equal(s.texts.length, 1);
        assert.equal(s.texts[0]?.type, "error");
        assert.equal(s.texts[0]?.code, "invalid_argument");
        assert.match(String(s.texts[0]?.message), message);
      }
      assert.equal((await envd.fetch("/health")).status, 204);
      const plain = await envd.fetch("/exec");
      assert.equal(plain.status, 426);
    });

    test("a client that disconnects mid-stream: the command runs on and finishes; Connect by tag sees its end", async () => {
      await using envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "/bin/sh", args: ["-c", "head -c 33554432 /dev/zero; echo finished >&2"] }, tag: "ws-left", stdin: false });
      await until(() => s.outBytes(), (n) => n > 0, "some output");
      s.ws.terminate();
      let end: { exitCode: number } | undefined;
      for await (const ev of envd.process.connect({ process: { selector: { case: "tag", value: "ws-left" } } })) {
        if (ev.event?.event.case === "end") end = ev.event.event.value;
      }
      assert.equal(end?.exitCode, 0);
      assert.equal((await envd.process.list({})).processes.length, 0);
    });

    test("daemon shutdown ends a running command: its end event is sent, then close 1000; exit 0", async () => {
      const envd = await startDaemon({ runtime });
      const s = await exec(envd, { process: { cmd: "sleep", args: ["600"] } });
      await until(() => s.texts.length, (n) => n >= 1, "the start message");
      assert.equal(await envd.stop(), 0);
      assert.equal((await s.done).code, 1000);
      assert.equal(s.end()?.exited, false);
      await envd[Symbol.asyncDispose]();
    });

    test("the token gate and the user rules of Start", async () => {
      await using envd = await startDaemon({ runtime });
      assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      const refused = await openWebSocket(envd, "/exec");
      assert.equal(refused.ok, false);
      if (!refused.ok) {
        assert.equal(refused.status, 401);
        assert.equal((JSON.parse(refused.body) as { code: number }).code, 401);
      }
      const unknown = await openWebSocket(envd, "/exec?username=no-such-user-xyz", { "X-Access-Token": TOKEN });
      assert.equal(unknown.ok, false);
      if (!unknown.ok) {
        assert.equal(unknown.status, 401);
        assert.deepEqual(JSON.parse(unknown.body), { code: 401, message: "invalid username: 'no-such-user-xyz'" });
      }
      const s = await exec(envd, { process: { cmd: "id", args: ["-un"] }, stdin: false }, { "X-Access-Token": TOKEN });
      await s.done;
      assert.equal(s.text("stdout").trim(), isRoot ? "root" : (process.env.USER ?? s.text("stdout").trim()));
      const basic = `Basic ${Buffer.from("root:").toString("base64")}`;
      const s2 = await exec(envd, { process: { cmd: "id", args: ["-un"] }, stdin: false }, { "X-Access-Token": TOKEN, Authorization: basic });
      await s2.done;
      if (isRoot) assert.equal(s2.text("stdout").trim(), "root");
    });
  });
}
