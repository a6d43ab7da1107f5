/**
 * Command output as log records (issue 16.5): with a log collector named by the metadata, each
 * line of a command's output is one `process_output` record; a collector that is down, or one that
 * accepts the connection and never answers, never holds the command or its streams back.
 */
import assert from "node:assert/strict";
import net from "node:net";
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

    test("a collector that accepts the connection and never answers does not hold back a command or its streams", async () => {
      // A log collector that hangs: it takes every connection and request and never says a word.
      const held = new Set<net.Socket>();
      let received = 0;
      const hanging = net.createServer((socket) => {
        held.add(socket);
        socket.on("data", (d) => {
          received += d.length;
        });
        socket.on("error", () => {});
        socket.once("close", () => held.delete(socket));
      });
      await new Promise<void>((r) => hanging.listen(0, "127.0.0.1", r));
      try {
        const port = (hanging.address() as net.AddressInfo).port;
        await using mmds = await startFakeMmds({});
        mmds.data = { instanceID: "sbx-hang", envID: "t", address: `http://127.0.0.1:${port}/logs` };
        await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
        // The shipper is stuck in its first POST: the request went out and no answer will come.
        await eventually(() => held.size > 0 && received > 0, "a request to the hanging collector");

        // Many lines (past the 10,000-record cap) on both streams, through a Start stream...
        const out = Array.from({ length: 200000 }, (_, i) => `${i + 1}\n`).join("");
        const err = Array.from({ length: 3000 }, (_, i) => `${i + 1}\n`).join("");
        const r = await runToEnd(envd.binary.process, { process: sh("seq 1 200000; seq 1 3000 >&2"), stdin: false });
        assert.equal(r.end?.exitCode, 0);
        assert.equal(r.stdout, out);
        assert.equal(r.stderr, err);

        // ...and a PTY, whose output is recorded too.
        const p = await runToEnd(envd.binary.process, { process: sh("seq 1 20000"), pty: { size: { cols: 80, rows: 24 } } });
        assert.equal(p.end?.exitCode, 0);
        assert.equal(p.pty, Array.from({ length: 20000 }, (_, i) => `${i + 1}\r\n`).join(""));

        await eventually(() => held.size > 0, "the collector still holding the connection");
        assert.equal((await envd.fetch("/health")).status, 204, "the daemon answers meanwhile");
      } finally {
        for (const s of held) s.destroy();
        await new Promise((r) => hanging.close(r));
      }
    });
  });
}
