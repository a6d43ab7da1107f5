import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { PortForwarder } from "./port-forwarder.ts";
import type { TcpSocket } from "./proc-net-tcp.ts";

const log = createLogger("error", () => {});
/** On Linux all of 127.0.0.0/8 is local: 127.0.0.3 plays the host-facing address. */
const BIND = "127.0.0.3";

async function until<T>(check: () => T | Promise<T>, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)));
}

function connect(port: number, allowHalfOpen = false): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: BIND, port, allowHalfOpen }, () => resolve(s));
    s.once("error", reject);
  });
}

/** A forwarder fed a fake socket table naming `ports` as 127.0.0.1 listeners. */
function forwarder(ports: () => number[]): PortForwarder {
  return new PortForwarder({
    log,
    bindAddresses: [BIND],
    intervalMs: 20,
    readSockets: async () =>
      ports().map((port): TcpSocket => ({ family: 4, address: "127.0.0.1", port, state: 0x0a, uid: 0, inode: port })),
    localAddresses: () => new Set([BIND]),
  });
}

describe("PortForwarder", () => {
  test("relays both ways and passes a half-close on; closes with the listener, dropping its connections", async () => {
    const target = net.createServer({ allowHalfOpen: true }, (s) => {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d));
      // Answer only after the client's FIN: proves the half-close went through.
      s.on("end", () => s.end(`got ${Buffer.concat(chunks).toString()}`));
    });
    const port = await listen(target);
    let live = [port];
    const f = forwarder(() => live);
    f.start();
    await until(() => f.list().length === 1, "the forward");
    assert.deepEqual(f.list(), [{ bind: BIND, port, target: "127.0.0.1", connections: 0 }]);

    const c = await connect(port, true);
    const reply = new Promise<string>((resolve) => {
      const got: Buffer[] = [];
      c.on("data", (d: Buffer) => got.push(d));
      c.on("end", () => resolve(Buffer.concat(got).toString()));
    });
    c.end("hello");
    assert.equal(await reply, "got hello");

    const held = await connect(port);
    const heldClosed = new Promise<void>((r) => held.once("close", () => r()));
    held.on("error", () => {});
    live = [];
    await until(() => f.list().length === 0, "the forward to close");
    await heldClosed;
    await assert.rejects(connect(port), /ECONNREFUSED/);
    await f.stop();
    target.close();
  });

  test("backpressure: a client that does not read stops the guest's writes instead of growing a buffer", async () => {
    let written = 0;
    let blocked!: () => void;
    const isBlocked = new Promise<void>((r) => {
      blocked = r;
    });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const target = net.createServer((s) => {
      s.on("error", () => {});
      const pump = () => {
        while (written < 256 * 1024 * 1024) {
          written += chunk.length;
          if (!s.write(chunk)) return blocked();
        }
      };
      pump();
    });
    const port = await listen(target);
    const f = forwarder(() => [port]);
    f.start();
    await until(() => f.list().length === 1, "the forward");
    const c = await connect(port);
    c.pause(); // never reads
    await isBlocked;
    assert.ok(written < 32 * 1024 * 1024, `the guest could write ${written} bytes before being held back`);
    c.destroy();
    await f.stop();
    target.close();
  });

  test("stop closes every forward and start opens them again; addresses no interface has are skipped", async () => {
    const target = net.createServer((s) => s.end("hi"));
    const port = await listen(target);
    const f = forwarder(() => [port]);
    f.start();
    await until(() => f.list().length === 1, "the forward");
    await f.stop();
    assert.deepEqual(f.list(), []);
    await assert.rejects(connect(port), /ECONNREFUSED/);
    f.start();
    await until(() => f.list().length === 1, "the forward again");
    assert.equal(f.starts, 2);
    await f.stop();

    const absent = new PortForwarder({
      log,
      bindAddresses: ["169.254.0.21"],
      intervalMs: 20,
      readSockets: async () => [{ family: 4, address: "127.0.0.1", port, state: 0x0a, uid: 0, inode: 1 }],
      localAddresses: () => new Set(["127.0.0.1"]),
    });
    absent.start();
    await until(() => absent.scans >= 2, "two scans");
    assert.deepEqual(absent.list(), []);
    await absent.stop();
    target.close();
  });
});
