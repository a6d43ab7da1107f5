/**
 * EnvdServer.quiet, which gates Bun's heap shrink (upkeep/heap-trimmer.ts): false while a response
 * is being written, while an upgraded socket is open and while an HTTP/2 connection is open; true
 * once every connection has answered what it carried. And a Connect call's end (endConnectCall).
 */
import assert from "node:assert/strict";
import { Agent, request, type ServerResponse } from "node:http";
import http2, { type Http2ServerResponse } from "node:http2";
import net from "node:net";
import { test } from "node:test";
import { until } from "../test/until.ts";
import { createLogger } from "./log.ts";
import { Router } from "./http/router.ts";
import { UpgradeRouter } from "./http/upgrade-router.ts";
import { EnvdServer } from "./server.ts";
import { Session } from "./session.ts";

const log = createLogger("error", () => {});


test("quiet: false while a response streams, an upgrade is open or an HTTP/2 connection is open", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  let started = false;
  const router = new Router(log)
    .add("GET", "/health", ({ res }) => {
      res.statusCode = 204;
      res.end();
    })
    .add("GET", "/held", async ({ res }) => {
      const r = res as ServerResponse;
      r.writeHead(200);
      r.write("first");
      started = true;
      await held;
      r.end("last");
    });
  const upgrades = new UpgradeRouter(log).add("/ws", () => {});
  const shutdown = new AbortController();
  await using server = new EnvdServer({ log, session: new Session(), router, upgrades, rpc: () => {}, rpcPrefixes: [], shutdownSignal: shutdown.signal });
  const { port } = await server.listen(0, "127.0.0.1");
  assert.equal(server.quiet, true, "nothing connected");

  // A streaming response.
  const body = new Promise<string>((resolve, reject) => {
    request({ host: "127.0.0.1", port, path: "/held", agent: false }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => {
        text += d.toString();
      });
      res.on("end", () => resolve(text));
    })
      .on("error", reject)
      .end();
  });
  await until(() => started, "the held response to start");
  assert.equal(server.quiet, false, "a response is being written");
  release();
  assert.equal(await body, "firstlast");
  await until(() => server.quiet, "quiet once answered");

  // An upgraded socket.
  const ws = net.connect(port, "127.0.0.1");
  ws.write("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  await until(() => !server.quiet, "the upgrade to count");
  ws.destroy();
  await until(() => server.quiet, "quiet once the upgraded socket closed");

  // An HTTP/2 connection, even between its requests.
  const h2 = http2.connect(`http://127.0.0.1:${port}`);
  const status = await new Promise<number>((resolve, reject) => {
    const req = h2.request({ ":path": "/health" });
    req.on("response", (h) => resolve(Number(h[":status"])));
    req.on("error", reject);
    req.resume();
    req.end();
  });
  assert.equal(status, 204);
  assert.equal(server.quiet, false, "an HTTP/2 connection is open");
  await new Promise<void>((r) => h2.close(() => r()));
  await until(() => server.quiet, "quiet once the HTTP/2 connection closed");
});

test("a Connect call completes once its response has finished (connect-node waits for an \"end\" that never comes)", async () => {
  // connect-node's own writer, as every RPC response is written: it awaits "end" after res.end().
  const { universalResponseToNodeResponse } = await import("@connectrpc/connect-node");
  const settled: string[] = [];
  const rpc = (_req: unknown, res: ServerResponse | Http2ServerResponse) => {
    const body = (async function* () {
      yield new Uint8Array([1, 2, 3]);
    })();
    universalResponseToNodeResponse({ status: 200, header: new Headers(), body }, res).then(
      () => void settled.push("done"),
      (err: unknown) => void settled.push(`failed: ${String(err)}`),
    );
  };
  const shutdown = new AbortController();
  await using server = new EnvdServer({ log, session: new Session(), router: new Router(log), rpc, rpcPrefixes: ["/rpc."], shutdownSignal: shutdown.signal });
  const { port } = await server.listen(0, "127.0.0.1");
  // A keep-alive connection that stays open after the response, as the SDKs keep theirs.
  const agent = new Agent({ keepAlive: true });
  try {
    const bytes = await new Promise<number>((resolve, reject) => {
      request({ host: "127.0.0.1", port, method: "POST", path: "/rpc.Test/Call", agent }, (res) => {
        let n = 0;
        res.on("data", (d: Buffer) => {
          n += d.length;
        });
        res.on("end", () => resolve(n));
      })
        .on("error", reject)
        .end();
    });
    assert.equal(bytes, 3);
    await until(() => settled.length === 1, "connect's response writer to return");
    assert.deepEqual(settled, ["done"]);
  } finally {
    agent.destroy();
  }
});

test("admission: /health never waits; a request whose client left while it waited is dropped; the others run when let in", async () => {
  // An admission that holds every request until the test lets them in, as a burst would.
  const held: (() => void)[] = [];
  const admission = { admit: (handle: () => void) => void held.push(handle), get waiting() { return held.length; } };
  const ran: string[] = [];
  const router = new Router(log)
    .add("GET", "/health", ({ res }) => {
      res.statusCode = 204;
      res.end();
    })
    .add("GET", "/work", ({ req, res }) => {
      ran.push(String(req.headers["x-name"]));
      res.end("done");
    });
  const shutdown = new AbortController();
  await using server = new EnvdServer({ log, session: new Session(), router, rpc: () => {}, rpcPrefixes: [], shutdownSignal: shutdown.signal, admission });
  const { port } = await server.listen(0, "127.0.0.1");
  const get = (path: string, name: string) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false, headers: { "x-name": name } });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      req.on("response", (res) => {
        let body = "";
        res.on("data", (d: Buffer) => {
          body += d.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
    });
    req.end();
    return { req, answer };
  };

  const left = get("/work", "left");
  left.answer.catch(() => {});
  const stays = get("/work", "stays");
  await until(() => held.length === 2, "both requests to wait");
  assert.equal((await get("/health", "probe").answer).status, 204, "answered while two requests wait");

  left.req.destroy();
  await until(() => server.connections.size === 1, "the server to see the first client leave");
  for (const handle of held.splice(0)) handle();
  assert.deepEqual(await stays.answer, { status: 200, body: "done" });
  assert.deepEqual(ran, ["stays"], "the request whose client left was never handled");
});

test("idle HTTP/1.1 connections close after idleTimeoutMs, never while a response is in flight; no Keep-Alive header", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  const router = new Router(log)
    .add("GET", "/health", ({ res }) => {
      res.statusCode = 204;
      res.end();
    })
    .add("GET", "/held", async ({ res }) => {
      (res as ServerResponse).writeHead(200, { "content-length": "4" });
      (res as ServerResponse).write("do");
      await held;
      res.end("ne");
    });
  const shutdown = new AbortController();
  await using server = new EnvdServer({ log, session: new Session(), router, rpc: () => {}, rpcPrefixes: [], shutdownSignal: shutdown.signal, idleTimeoutMs: 150 });
  const { port } = await server.listen(0, "127.0.0.1");
  const open = async () => {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((r, reject) => socket.once("connect", () => r()).once("error", reject));
    const state = { text: "", closed: false };
    socket.on("data", (d: Buffer) => {
      state.text += d.toString("latin1");
    });
    socket.on("close", () => {
      state.closed = true;
    });
    return { socket, state };
  };

  // A connection that never sends anything is closed.
  const silent = await open();
  await until(() => silent.state.closed, "the silent connection to close");

  // A response held for several idle periods keeps its connection; once answered, it closes.
  const busy = await open();
  busy.socket.write("GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
  await until(() => busy.state.text.includes("\r\n\r\n"), "the held response's head");
  const heldSince = Date.now();
  while (Date.now() - heldSince < 600) await new Promise((r) => setTimeout(r, 20));
  assert.equal(busy.state.closed, false, "closed while its response was in flight");
  release();
  await until(() => busy.state.text.endsWith("done"), "the held response's body");
  await until(() => busy.state.closed, "the answered connection to close once idle");

  // Answers carry no Keep-Alive header (Go envd sends none; fetch keeps idle connections 4 s then).
  const probe = await open();
  probe.socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  await until(() => probe.state.text.includes("\r\n\r\n"), "the /health answer");
  assert.match(probe.state.text, /^HTTP\/1\.1 204/);
  assert.doesNotMatch(probe.state.text, /^keep-alive:/im);
  probe.socket.destroy();
});
