/**
 * Port forwarding seen from outside the sandbox: the daemon runs in a network namespace this test
 * creates (the "guest", joined to this namespace by a veth pair). Guest programs listen on loopback
 * only; the test connects from its own namespace to the guest's host-facing addresses (IPv4 and
 * IPv6), the way the host reaches 169.254.0.21 in production.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { type Daemon, eventually, ROOT, RUNTIMES, startDaemon } from "./harness.ts";
import { createNetns, echoOnce, netnsUnavailable, type NetnsPair, probe } from "./lifecycle-fixtures.ts";

const NODE = join(ROOT, "node_modules", ".bin", "node");
const ECHO_SERVER =
  "const net=require('net');net.createServer({allowHalfOpen:true},s=>{s.on('error',()=>{});s.pipe(s)})" +
  ".listen(+process.argv[2],process.argv[1],()=>console.log('listening'))";

const skip = netnsUnavailable();
let nextPort = 20_000 + Math.floor(Math.random() * 20_000);

async function guestDaemon(runtime: "bun" | "node", pair: NetnsPair): Promise<Daemon> {
  return startDaemon({
    runtime,
    wrap: ["ip", "netns", "exec", pair.ns],
    args: ["--host", "0.0.0.0", "--forward-address", `${pair.guest4},${pair.guest6}`],
    urlHost: pair.guest4,
  });
}

/** Starts an echo server inside the guest (through the daemon) and waits until it listens. */
async function guestEcho(envd: Daemon, host: string, port: number): Promise<{ pid: number; stop(): Promise<void> }> {
  const ctl = new AbortController();
  const stream = envd.process.start({ process: { cmd: NODE, args: ["-e", ECHO_SERVER, host, String(port)] } }, { signal: ctl.signal });
  let pid = 0;
  for await (const res of stream) {
    const ev = res.event?.event;
    if (ev?.case === "start") pid = ev.value.pid;
    if (ev?.case === "data" && Buffer.from(ev.value.output.value ?? new Uint8Array()).toString().includes("listening")) break;
    if (ev?.case === "end") throw new Error(`echo server ended: ${ev.value.status}`);
  }
  return {
    pid,
    async stop() {
      await envd.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: 9 });
      ctl.abort();
    },
  };
}

const opened = (envd: Daemon, port: number) => envd.logs.filter((l) => l.msg === "port forward opened" && l.port === port);

for (const runtime of RUNTIMES) {
  describe(`port forwarding [${runtime}]`, { skip }, () => {
    test("a 127.0.0.1 listener is reachable on the IPv4 and IPv6 host-facing addresses, bytes intact both ways", async () => {
      using pair = createNetns("pf");
      await using envd = await guestDaemon(runtime, pair);
      const port = nextPort++;
      assert.equal(await probe(pair.guest4, port), "refused", "nothing there before the guest listens");
      const server = await guestEcho(envd, "127.0.0.1", port);
      await eventually(async () => (await probe(pair.guest4, port)) === "open", "the IPv4 forward");
      assert.equal((await echoOnce(pair.guest4, port, Buffer.from("hello"))).toString(), "hello");
      await eventually(async () => (await probe(pair.guest6, port)) === "open", "the IPv6 forward");
      assert.equal((await echoOnce(pair.guest6, port, Buffer.from("over v6"))).toString(), "over v6");
      // 8 MiB through the relay and back: backpressure on both legs, nothing lost or reordered.
      const big = randomBytes(8 << 20);
      assert.ok((await echoOnce(pair.guest4, port, big)).equals(big));
      // A slow reader gets the tail too: the relay closes its side only once its writes are out
      // (on Bun it used to cut up to ~110 KB off when the guest closed first).
      const mid = randomBytes(4 << 20);
      const slow = await echoOnce(pair.guest4, port, mid, { slowReader: true });
      assert.equal(slow.length, mid.length);
      assert.ok(slow.equals(mid));
      const logs = opened(envd, port);
      assert.deepEqual(logs.map((l) => l.bind).sort(), [pair.guest4, pair.guest6].sort());
      assert.ok(logs.every((l) => l.target === "127.0.0.1"));
      await server.stop();
    });

    test("a ::1 listener is forwarded too; a wildcard listener is left alone (reachable already)", async () => {
      using pair = createNetns("p6");
      await using envd = await guestDaemon(runtime, pair);
      // The wildcard listener starts first and has the lower port: the scan that forwards ::1 has
      // seen it, and would have handled it first.
      const wild = nextPort++;
      const v6 = nextPort++;
      const sw = await guestEcho(envd, "0.0.0.0", wild);
      const s6 = await guestEcho(envd, "::1", v6);
      await eventually(async () => (await probe(pair.guest4, v6)) === "open", "the forward of ::1 on IPv4");
      assert.equal((await echoOnce(pair.guest4, v6, Buffer.from("to ::1"))).toString(), "to ::1");
      await eventually(async () => (await probe(pair.guest6, v6)) === "open", "the forward of ::1 on IPv6");
      assert.ok(opened(envd, v6).every((l) => l.target === "::1"));
      assert.equal((await echoOnce(pair.guest4, wild, Buffer.from("direct"))).toString(), "direct");
      await eventually(() => opened(envd, v6).length === 2, "both forwards of ::1 logged");
      assert.equal(opened(envd, wild).length, 0);
      await s6.stop();
      await sw.stop();
    });

    test("when the listener goes, the forward goes, with its open connections", async () => {
      using pair = createNetns("pc");
      await using envd = await guestDaemon(runtime, pair);
      const port = nextPort++;
      const server = await guestEcho(envd, "127.0.0.1", port);
      await eventually(async () => (await probe(pair.guest4, port)) === "open", "the forward");
      const held = net.connect({ host: pair.guest4, port });
      held.on("error", () => {});
      const heldClosed = new Promise<void>((r) => held.once("close", () => r()));
      await new Promise<void>((r) => held.once("connect", () => r()));
      held.write("ping");
      await new Promise<void>((r) => held.once("data", () => r()));
      await server.stop();
      await eventually(async () => (await probe(pair.guest4, port)) === "refused", "the forward to close");
      await heldClosed;
      await eventually(() => envd.logs.some((l) => l.msg === "port forward closed" && l.port === port), "the close log");
    });

    test("snapshot prepare stops forwarding; the restore (/health) brings it back", async () => {
      using pair = createNetns("ps");
      await using envd = await guestDaemon(runtime, pair);
      const port = nextPort++;
      const server = await guestEcho(envd, "127.0.0.1", port);
      await eventually(async () => (await probe(pair.guest4, port)) === "open", "the forward");
      assert.equal((await envd.fetch("/snapshot/prepare", { method: "POST" })).status, 204);
      assert.equal(await probe(pair.guest4, port), "refused", "forwarding is stopped while prepared");
      assert.equal((await envd.fetch("/health")).status, 204);
      await eventually(async () => (await probe(pair.guest4, port)) === "open", "the forward after the restore");
      assert.equal((await echoOnce(pair.guest4, port, Buffer.from("after restore"))).toString(), "after restore");
      await server.stop();
    });
  });
}
