/**
 * Our own Ports service (proto/envd/ports.proto): WatchPorts pushes opened/closed for listening
 * TCP sockets with the owning pid and command, WaitForPort answers once a port listens. Real
 * listeners: sockets of this test process and of a command started through the daemon.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Ports, type WatchPortsResponse } from "../../src/gen/envd/ports_pb.js";
import { eventually, RUNTIMES, startDaemon } from "./harness.ts";

function listen(host: string): Promise<net.Server & { port: number }> {
  const server = net.createServer((s) => s.destroy());
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve(Object.assign(server, { port: (server.address() as net.AddressInfo).port })));
  });
}
const close = (s: net.Server) => new Promise<void>((r) => s.close(() => r()));

/** Collects a WatchPorts stream's messages in the background. */
function collect(stream: AsyncIterable<WatchPortsResponse>) {
  const got: WatchPortsResponse[] = [];
  const done = (async () => {
    for await (const m of stream) got.push(m);
  })().catch((err: unknown) => err);
  return { got, done };
}

const eventsOf = (got: WatchPortsResponse[], kind: "opened" | "closed", port: number) =>
  got.filter((m) => m.event.case === kind && m.event.value.listener?.port === port);

for (const runtime of RUNTIMES) {
  describe(`ports as events [${runtime}]`, () => {
    test("WatchPorts: start, the listeners of the moment (the daemon's own among them), then opened and closed with pid and command", async () => {
      await using envd = await startDaemon({ runtime });
      for (const binary of [false, true]) {
        const ports = createClient(Ports, envd.transport({ binary }));
        const before = await listen("127.0.0.1");
        const ctl = new AbortController();
        const { got, done } = collect(ports.watchPorts({}, { signal: ctl.signal }));
        await eventually(() => got.some((m) => m.event.case === "opened" && m.event.value.listener?.port === envd.port), "the daemon's own listener");
        assert.equal(got[0]?.event.case, "start");
        const own = eventsOf(got, "opened", envd.port)[0]?.event.value;
        assert.ok(own && "existing" in own && own.existing, "listed as existing");
        assert.equal(own.listener?.pid, envd.pid);
        assert.equal(own.listener?.address, "127.0.0.1");
        assert.equal(own.listener?.family, 4);
        // Each listener of the moment is its own message: the earlier one may arrive a moment later.
        const pre = await eventually(() => eventsOf(got, "opened", before.port)[0]?.event.value, "the earlier listener");
        assert.ok("existing" in pre && pre.existing, "the earlier listener is listed as existing");
        assert.equal(pre.listener?.pid, process.pid);

        const fresh = await listen("127.0.0.1");
        const opened = await eventually(() => eventsOf(got, "opened", fresh.port)[0]?.event.value, "opened");
        assert.ok("existing" in opened && !opened.existing);
        assert.equal(opened.listener?.pid, process.pid);
        assert.match(opened.listener?.cmd ?? "", /node/);
        assert.equal(opened.listener?.uid, process.getuid?.());
        await close(fresh);
        await eventually(() => eventsOf(got, "closed", fresh.port).length === 1, "closed");
        await close(before);
        await eventually(() => eventsOf(got, "closed", before.port).length === 1, "closed (the earlier one)");
        assert.equal(eventsOf(got, "opened", fresh.port).length, 1, "one opened per listener");
        ctl.abort();
        const end = await done;
        assert.ok(end instanceof ConnectError && end.code === Code.Canceled, String(end));
      }
    });

    test("WatchPorts with a port filter sees only those ports; IPv6 listeners carry family 6; a command started through the daemon shows its pid", async () => {
      await using envd = await startDaemon({ runtime });
      const ports = createClient(Ports, envd.transport());
      const other = await listen("127.0.0.1");
      const v6 = await listen("::1");
      const ctl = new AbortController();
      const { got } = collect(ports.watchPorts({ ports: [v6.port] }, { signal: ctl.signal }));
      const first = await eventually(() => eventsOf(got, "opened", v6.port)[0], "the IPv6 listener");
      assert.ok(first.event.case === "opened");
      assert.equal(first.event.value.listener?.address, "::1");
      assert.equal(first.event.value.listener?.family, 6);
      await close(v6);
      await eventually(() => eventsOf(got, "closed", v6.port).length === 1, "closed");
      assert.equal(eventsOf(got, "opened", other.port).length, 0, "filtered out");
      assert.equal(eventsOf(got, "opened", envd.port).length, 0, "filtered out");
      ctl.abort();
      await close(other);

      // A listener of a command the daemon runs.
      const probe = await listen("127.0.0.1");
      const port = probe.port;
      await close(probe);
      const py = `import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(("127.0.0.1",${port}));s.listen();time.sleep(60)`;
      const start = envd.process.start({ process: { cmd: "python3", args: ["-c", py] } });
      let pid = 0;
      const started = (async () => {
        for await (const r of start) if (r.event?.event.case === "start") pid = r.event.event.value.pid;
      })().catch(() => {});
      const waited = await ports.waitForPort({ port, timeoutMs: 20_000 });
      assert.equal(waited.listeners.length, 1);
      assert.equal(waited.listeners[0]?.pid, pid);
      assert.match(waited.listeners[0]?.cmd ?? "", /python3 -c import socket,time;s=socket.socket()/);
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: 9 });
      await started;
    });

    test("WaitForPort: answers at once for a listening port, waits for one that opens later, deadline_exceeded when none does", async () => {
      await using envd = await startDaemon({ runtime });
      const ports = createClient(Ports, envd.transport({ binary: true }));
      const now = await ports.waitForPort({ port: envd.port, timeoutMs: 5_000 });
      assert.deepEqual(
        now.listeners.map((l) => [l.address, l.pid]),
        [["127.0.0.1", envd.pid]],
      );
      assert.equal((await ports.waitForPort({ port: envd.port, address: "127.0.0.1" })).listeners.length, 1);

      const spare = await listen("127.0.0.1");
      const port = spare.port;
      await close(spare);
      await assert.rejects(ports.waitForPort({ port, timeoutMs: 300 }), (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, Code.DeadlineExceeded);
        assert.match(err.rawMessage, new RegExp(`nothing listened on port ${port} within 300 ms`));
        return true;
      });
      // The request's own Connect deadline also ends the wait.
      await assert.rejects(ports.waitForPort({ port }, { timeoutMs: 300 }), (err: unknown) => err instanceof ConnectError && err.code === Code.DeadlineExceeded);

      const waiting = ports.waitForPort({ port, timeoutMs: 20_000 });
      const later = net.createServer();
      await new Promise<void>((r) => later.listen(port, "0.0.0.0", () => r()));
      const got = await waiting;
      assert.deepEqual(
        got.listeners.map((l) => [l.address, l.port, l.pid]),
        [["0.0.0.0", port, process.pid]],
      );
      // An address filter that does not match keeps waiting.
      await assert.rejects(ports.waitForPort({ port, address: "::1", timeoutMs: 300 }), (err: unknown) => err instanceof ConnectError && err.code === Code.DeadlineExceeded);
      await close(later);
    });

    test("bad input: invalid_argument, and the daemon keeps answering", async () => {
      await using envd = await startDaemon({ runtime });
      const ports = createClient(Ports, envd.transport());
      const invalid = (err: unknown) => err instanceof ConnectError && err.code === Code.InvalidArgument;
      await assert.rejects(ports.waitForPort({ port: 0 }), invalid);
      await assert.rejects(ports.waitForPort({ port: 70_000 }), invalid);
      await assert.rejects(ports.waitForPort({ port: 80, timeoutMs: 25 * 3600 * 1000 }), invalid);
      await assert.rejects(
        (async () => {
          for await (const _ of ports.watchPorts({ ports: [0] })) {
            // nothing
          }
        })(),
        invalid,
      );
      const raw = await envd.fetch("/envd.Ports/WaitForPort", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
      assert.equal(raw.status, 400);
      assert.equal((await ports.waitForPort({ port: envd.port })).listeners.length, 1);
    });

    test("behind the access token like every RPC", async () => {
      await using envd = await startDaemon({ runtime });
      const init = await envd.fetch("/init", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ accessToken: "secret-token" }) });
      assert.equal(init.status, 204);
      const anon = createClient(Ports, envd.transport());
      await assert.rejects(anon.waitForPort({ port: envd.port }), (err: unknown) => err instanceof ConnectError && err.code === Code.Unauthenticated);
      const authed = createClient(Ports, envd.transport({ headers: { "x-access-token": "secret-token" } }));
      assert.equal((await authed.waitForPort({ port: envd.port })).listeners.length, 1);
    });
  });
}
