/**
 * GET /tunnel: a real TCP server in the "sandbox" (this machine), a real WebSocket client, the
 * daemon under both runtimes in between.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { describe, test } from "node:test";
import { postInit } from "./control-fakes.ts";
import { type Daemon, RUNTIMES, startDaemon } from "./harness.ts";
import { closed, mustOpen, openWebSocket, settled, until } from "./ws-client.ts";

const TOKEN = "tunnel-token-0123456789";
const MIB = 1024 * 1024;

/** A TCP server on 127.0.0.1 that hands each connection to `onConnection`. */
async function tcpServer(onConnection: (s: net.Socket) => void): Promise<net.Server & AsyncDisposable & { port: number }> {
  const server = net.createServer(onConnection);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(server, {
    port,
    async [Symbol.asyncDispose]() {
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function sha(bufs: Buffer[]): string {
  const h = createHash("sha256");
  for (const b of bufs) h.update(b);
  return h.digest("hex");
}

async function expectJsonError(envd: Daemon, path: string, status: number, message: string | RegExp, headers: Record<string, string> = {}) {
  const r = await openWebSocket(envd, path, headers);
  assert.equal(r.ok, false, `${path} should be refused`);
  if (r.ok) return;
  assert.equal(r.status, status, `${path}: ${r.body}`);
  assert.match(String(r.headers["content-type"]), /application\/json/);
  const body = JSON.parse(r.body) as { code: number; message: string };
  assert.equal(body.code, status);
  if (typeof message === "string") assert.equal(body.message, message);
  else assert.match(body.message, message);
}

for (const runtime of RUNTIMES) {
  describe(`GET /tunnel [${runtime}]`, () => {
    test("relays bytes both ways exactly, binary frames, to localhost by default", async () => {
      await using echo = await tcpServer((s) => s.pipe(s));
      await using envd = await startDaemon({ runtime });
      for (const query of [`?port=${echo.port}`, `?host=127.0.0.1&port=${echo.port}`]) {
        const ws = await mustOpen(envd, `/tunnel${query}`);
        const sent = [randomBytes(1), randomBytes(64 * 1024), randomBytes(3 * MIB + 17)];
        const want = Buffer.concat(sent);
        const got: Buffer[] = [];
        let binaryOnly = true;
        ws.on("message", (d: Buffer, isBinary) => {
          got.push(d);
          binaryOnly &&= isBinary;
        });
        for (const b of sent) ws.send(b);
        await until(() => got.reduce((n, b) => n + b.length, 0), (n) => n >= want.length, "the echo");
        assert.equal(Buffer.concat(got).equals(want), true, "echoed bytes differ");
        assert.equal(binaryOnly, true, "every frame from the daemon is binary");
        ws.close();
        assert.equal((await closed(ws)).code, 1005);
      }
    });

    test("the target closing: what it sent arrives, then the WebSocket closes with 1000", async () => {
      const tail = randomBytes(2 * MIB);
      await using target = await tcpServer((s) => s.end(Buffer.concat([Buffer.from("bye "), tail])));
      await using envd = await startDaemon({ runtime });
      const ws = await mustOpen(envd, `/tunnel?port=${target.port}`);
      const got: Buffer[] = [];
      ws.on("message", (d: Buffer) => got.push(d));
      const end = await closed(ws);
      assert.equal(end.code, 1000);
      assert.equal(Buffer.concat(got).equals(Buffer.concat([Buffer.from("bye "), tail])), true);
    });

    test("the client closing ends the target's connection after what it sent", async () => {
      let received = Buffer.alloc(0);
      let ended!: () => void;
      const targetEnded = new Promise<void>((r) => (ended = r));
      await using target = await tcpServer((s) => {
        s.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
        s.on("end", () => {
          ended();
          s.end();
        });
      });
      await using envd = await startDaemon({ runtime });
      const ws = await mustOpen(envd, `/tunnel?port=${target.port}`);
      ws.send(Buffer.from("last words"));
      ws.close(1000);
      await targetEnded;
      assert.equal(received.toString(), "last words");
    });

    test("a slow client: the target is held back (not buffered in the daemon), and nothing is lost", async () => {
      const block = randomBytes(MIB);
      const total = 128 * MIB;
      let written = 0;
      await using target = await tcpServer((s) => {
        const pump = () => {
          while (written < total) {
            written += block.length;
            if (!s.write(block)) return void s.once("drain", pump);
          }
          s.end();
        };
        pump();
      });
      await using envd = await startDaemon({ runtime });
      const ws = await mustOpen(envd, `/tunnel?port=${target.port}`);
      const got: Buffer[] = [];
      let gotBytes = 0;
      ws.on("message", (d: Buffer) => {
        got.push(d);
        gotBytes += d.length;
      });
      ws.pause(); // the client stops reading
      const stalledAt = await settled(() => written);
      assert.ok(stalledAt < total / 4, `the target wrote ${stalledAt / MIB} MiB of ${total / MIB} while the client read nothing`);
      ws.resume();
      const end = await closed(ws);
      assert.equal(end.code, 1000);
      assert.equal(gotBytes, total);
      assert.equal(sha(got), sha(Array.from({ length: total / MIB }, () => block)));
    });

    test("a slow target: the client is held back (not buffered in the daemon), and nothing is lost", async () => {
      const block = randomBytes(MIB);
      const total = 128 * MIB;
      let targetSocket: net.Socket | undefined;
      const received = createHash("sha256");
      let receivedBytes = 0;
      await using target = await tcpServer((s) => {
        targetSocket = s;
        s.pause(); // the target reads nothing for now
        s.on("data", (d: Buffer) => {
          received.update(d);
          receivedBytes += d.length;
        });
      });
      await using envd = await startDaemon({ runtime });
      const ws = await mustOpen(envd, `/tunnel?port=${target.port}`);
      let flushed = 0;
      let queued = 0;
      const pump = () => {
        // Keep a few MiB queued in the client, as a well-behaved sender does.
        while (queued < total && queued - flushed < 8 * MIB) {
          queued += block.length;
          ws.send(block, () => {
            flushed += block.length;
            pump();
          });
        }
      };
      pump();
      await until(() => targetSocket, (s) => s !== undefined, "the target's connection");
      const stalledAt = await settled(() => flushed);
      assert.ok(stalledAt < total / 4, `the client got ${stalledAt / MIB} MiB of ${total / MIB} out while the target read nothing`);
      targetSocket?.resume();
      await until(() => receivedBytes, (n) => n >= total, "everything at the target", 120_000);
      assert.equal(receivedBytes, total);
      assert.equal(received.digest("hex"), sha(Array.from({ length: total / MIB }, () => block)));
      ws.close();
      await closed(ws);
    });

    test("bad ports are 400 with E2B's message, before any upgrade", async () => {
      await using envd = await startDaemon({ runtime });
      await expectJsonError(envd, "/tunnel?port=0", 400, "port must be between 1 and 65535, got 0");
      await expectJsonError(envd, "/tunnel?port=65536", 400, "port must be between 1 and 65535, got 65536");
      await expectJsonError(envd, "/tunnel?port=-1", 400, "port must be between 1 and 65535, got -1");
      await expectJsonError(envd, "/tunnel?port=http", 400, /invalid format for parameter port/);
      await expectJsonError(envd, "/tunnel", 400, /port is required/);
      // The same answers without an upgrade; a good port without one is 426.
      const plain = await envd.fetch("/tunnel?port=0");
      assert.equal(plain.status, 400);
      assert.deepEqual(await plain.json(), { code: 400, message: "port must be between 1 and 65535, got 0" });
      const noUpgrade = await envd.fetch("/tunnel?port=80");
      assert.equal(noUpgrade.status, 426);
      assert.equal(noUpgrade.headers.get("upgrade"), "websocket");
    });

    test("an unreachable target is 502 'failed to connect to host:port', and the daemon goes on", async () => {
      await using envd = await startDaemon({ runtime });
      const port = await closedPort();
      await expectJsonError(envd, `/tunnel?host=127.0.0.1&port=${port}`, 502, new RegExp(`^failed to connect to 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
      await expectJsonError(envd, "/tunnel?host=no-such-host.invalid&port=80", 502, /^failed to connect to no-such-host\.invalid:80: /);
      assert.equal((await envd.fetch("/health")).status, 204);
    });

    test("behind the token gate: none or a wrong one is 401, the right one relays", async () => {
      await using echo = await tcpServer((s) => s.pipe(s));
      await using envd = await startDaemon({ runtime });
      assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      const gate = "unauthorized access, please provide a valid access token or method signing if supported";
      await expectJsonError(envd, `/tunnel?port=${echo.port}`, 401, gate);
      await expectJsonError(envd, `/tunnel?port=${echo.port}`, 401, gate, { "X-Access-Token": "wrong" });
      // The gate comes before validation, as for every route.
      await expectJsonError(envd, "/tunnel?port=0", 401, gate);
      const ws = await mustOpen(envd, `/tunnel?port=${echo.port}`, { "X-Access-Token": TOKEN });
      const got = new Promise<Buffer>((r) => ws.once("message", (d: Buffer) => r(d)));
      ws.send(Buffer.from("ping"));
      assert.equal((await got).toString(), "ping");
      ws.close();
      await closed(ws);
    });

    test("daemon shutdown closes an open tunnel with 1001 and exits 0", async () => {
      await using echo = await tcpServer((s) => s.pipe(s));
      const envd = await startDaemon({ runtime });
      const ws = await mustOpen(envd, `/tunnel?port=${echo.port}`);
      const end = closed(ws);
      assert.equal(await envd.stop(), 0);
      assert.equal((await end).code, 1001);
      await envd[Symbol.asyncDispose]();
    });

    test("a WebSocket to a REST path, or another Upgrade, is an ordinary request", async () => {
      await using envd = await startDaemon({ runtime });
      const r = await openWebSocket(envd, "/envs");
      assert.equal(r.ok, false);
      if (!r.ok) assert.equal(r.status, 200);
      // curl --http2 offers h2c this way (fetch refuses to send an Upgrade header).
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const req = http.get(`${envd.url}/envs`, { headers: { Connection: "Upgrade, HTTP2-Settings", Upgrade: "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA" } }, (res) => {
          res.resume();
          resolve(res.statusCode);
        });
        req.on("error", reject);
      });
      assert.equal(status, 200);
    });
  });
}
