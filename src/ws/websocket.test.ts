import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { WebSocket } from "ws";
import { acceptWebSocket, keepAlive, refuseUpgrade, SendWindow } from "./websocket.ts";

/** A node:http server whose upgrades run `onSocket` on the accepted WebSocket. */
async function server(onSocket: (ws: WebSocket) => void) {
  const s = http.createServer();
  // Upgraded sockets are no longer the HTTP server's: closeAllConnections() does not see them, and
  // close() would wait for them forever if a test failed before its client closed.
  const upgraded = new Set<import("node:stream").Duplex>();
  s.on("upgrade", (req, socket, head) => {
    upgraded.add(socket);
    socket.once("close", () => upgraded.delete(socket));
    if (req.url === "/refuse") return refuseUpgrade(socket, 418, "no tea");
    void acceptWebSocket(req, socket, head).then(onSocket);
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return Object.assign(s, {
    url: `ws://127.0.0.1:${(s.address() as AddressInfo).port}`,
    async [Symbol.asyncDispose]() {
      s.closeAllConnections();
      for (const socket of upgraded) socket.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  });
}

describe("websocket helpers", () => {
  it("keepAlive drops a peer that does not answer pings, and keeps one that does", async () => {
    let serverSide: WebSocket | undefined;
    await using s = await server((ws) => {
      serverSide = ws;
      keepAlive(ws, 50, 100);
    });
    const answering = new WebSocket(`${s.url}/`);
    await new Promise((r) => answering.once("open", r));
    let pings = 0;
    answering.on("ping", () => pings++);
    const silent = new WebSocket(`${s.url}/`, { autoPong: false });
    const code = await new Promise<number>((r) => silent.once("close", (c) => r(c)));
    assert.equal(code, 1006, "the silent peer's connection was dropped");
    assert.ok(pings > 0);
    assert.equal(answering.readyState, WebSocket.OPEN, "the answering peer is still connected");
    assert.ok(serverSide);
    answering.close();
  });

  it("refuseUpgrade answers JSON and closes", async () => {
    await using s = await server(() => {});
    const ws = new WebSocket(`${s.url}/refuse`);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      ws.once("unexpected-response", (_req, r) => resolve(r));
      ws.once("error", reject);
    });
    const body = await new Promise<string>((r) => {
      let t = "";
      res.on("data", (d: Buffer) => (t += d.toString()));
      res.on("end", () => r(t));
    });
    assert.equal(res.statusCode, 418);
    assert.match(String(res.headers["content-type"]), /application\/json/);
    assert.deepEqual(JSON.parse(body), { code: 418, message: "no tea" });
  });

  it("SendWindow: full above the high-water mark while the peer does not read, drained after", async () => {
    let window: SendWindow | undefined;
    let sent = 0;
    await using s = await server((ws) => {
      window = new SendWindow(ws, 1 << 20, 256 << 10);
      const block = Buffer.alloc(64 << 10);
      const pump = async () => {
        while (sent < 64 << 20) {
          window?.send(block, true);
          sent += block.length;
          if (window?.full) await window.drained();
        }
      };
      void pump();
    });
    const client = new WebSocket(`${s.url}/`);
    let received = 0;
    client.on("message", (d: Buffer) => (received += d.length));
    await new Promise((r) => client.once("open", r));
    client.pause();
    // Wait until the producer is held back.
    const deadline = Date.now() + 20_000;
    let last = -1;
    let same = 0;
    while (same < 5) {
      assert.ok(Date.now() < deadline, "the producer never stopped");
      await new Promise((r) => setTimeout(r, 50));
      same = sent === last ? same + 1 : 0;
      last = sent;
    }
    assert.ok(sent < 32 << 20, `sent ${sent} bytes to a peer that reads nothing`);
    // Held back by the window: bytes still pending above the low-water mark (the producer went
    // over the high one, and waits until what it sent drains under the low one).
    assert.ok((window?.pending ?? 0) > 256 << 10, `pending ${window?.pending}`);
    client.resume();
    while (received < 64 << 20) {
      assert.ok(Date.now() < deadline + 20_000, "not everything arrived");
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(received, 64 << 20);
    client.close();
  });
});
