/**
 * Bursts of requests (http/admission.ts takes them in turns once a turn's budget is spent): every
 * request of a burst gets its own, correct answer; pipelined HTTP/1.1 requests are answered in
 * the order they were sent even though GET /health never waits for its turn; /health keeps
 * answering while a burst of Starts is handled; and the SDK closes the connections of a burst once
 * it no longer uses them, as it does with Go envd (no `Keep-Alive: timeout=` is advertised).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { Process } from "../../src/gen/process/process_pb.js";
import { type Daemon, eventually, RUNTIMES, runToEnd, startDaemon } from "./harness.ts";

interface RawResponse {
  status: number;
  body: Buffer;
}

/** Reads `count` HTTP/1.1 responses (Content-Length or chunked bodies; 204 has none) from `socket`, in order. */
function readResponses(socket: net.Socket, count: number): Promise<RawResponse[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: RawResponse[] = [];
    const parse = (): boolean => {
      const headEnd = buf.indexOf("\r\n\r\n");
      if (headEnd < 0) return false;
      const head = buf.subarray(0, headEnd).toString("latin1").split("\r\n");
      const status = Number((head[0] as string).split(" ")[1]);
      const headers = new Map(head.slice(1).map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
      let pos = headEnd + 4;
      let body: Buffer;
      if (headers.get("transfer-encoding") === "chunked") {
        const parts: Buffer[] = [];
        for (;;) {
          const lineEnd = buf.indexOf("\r\n", pos);
          if (lineEnd < 0) return false;
          const size = Number.parseInt(buf.subarray(pos, lineEnd).toString("latin1"), 16);
          if (buf.length < lineEnd + 2 + size + 2) return false;
          parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
          pos = lineEnd + 2 + size + 2;
          if (size === 0) break;
        }
        body = Buffer.concat(parts);
      } else {
        const length = status === 204 || status === 304 ? 0 : Number(headers.get("content-length") ?? 0);
        if (buf.length < pos + length) return false;
        body = Buffer.from(buf.subarray(pos, pos + length));
        pos += length;
      }
      out.push({ status, body });
      buf = buf.subarray(pos);
      return true;
    };
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (out.length < count && parse());
      if (out.length === count) resolve(out);
    });
    socket.on("error", reject);
    socket.on("close", () => {
      if (out.length < count) reject(new Error(`connection closed after ${out.length} of ${count} responses`));
    });
  });
}

/** ESTABLISHED TCP connections on the daemon's side of `port` (IPv4 loopback), from /proc/net/tcp. */
function daemonConnections(port: number): number {
  const local = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/tcp", "latin1")
    .split("\n")
    .slice(1)
    .filter((line) => {
      const f = line.trim().split(/\s+/);
      return (f[1] ?? "").endsWith(local) && f[3] === "01";
    }).length;
}

for (const runtime of RUNTIMES) {
  describe(`request bursts (${runtime})`, () => {
    let envd: Daemon;
    let dir: string;
    before(async () => {
      envd = await startDaemon({ runtime });
      dir = mkdtempSync(join(tmpdir(), "envd-burst-"));
    });
    after(async () => {
      await envd?.[Symbol.asyncDispose]();
      rmSync(dir, { recursive: true, force: true });
    });

    test("pipelined requests on one connection are answered in order, /health among them", async () => {
      // 150 downloads of distinct files, a /health after every tenth: far more than one turn's
      // budget, so most of them wait for their turn while the /health requests do not.
      const requests: { path: string; expect: RawResponse }[] = [];
      for (let i = 0; i < 150; i++) {
        const file = join(dir, `f${i}.txt`);
        const content = `file ${i} ${"x".repeat(i * 37)}\n`;
        writeFileSync(file, content);
        requests.push({ path: `/files?path=${encodeURIComponent(file)}&username=root`, expect: { status: 200, body: Buffer.from(content) } });
        if (i % 10 === 9) requests.push({ path: "/health", expect: { status: 204, body: Buffer.alloc(0) } });
      }
      const socket = net.connect(envd.port, "127.0.0.1");
      try {
        await new Promise<void>((r, reject) => socket.once("connect", () => r()).once("error", reject));
        const answers = readResponses(socket, requests.length);
        socket.write(requests.map((r) => `GET ${r.path} HTTP/1.1\r\nHost: envd\r\n\r\n`).join(""));
        const got = await answers;
        for (let i = 0; i < requests.length; i++) {
          const want = (requests[i] as { path: string; expect: RawResponse }).expect;
          const answer = got[i] as RawResponse;
          assert.equal(answer.status, want.status, `response ${i} (${requests[i]?.path})`);
          assert.ok(answer.body.equals(want.body), `response ${i} (${requests[i]?.path}): ${answer.body.toString().slice(0, 40)}`);
        }
      } finally {
        socket.destroy();
      }
    });

    test("200 Starts at once, each on its own connection: every one answers with its own output, and /health keeps answering", async () => {
      // Connect JSON over HTTP/1.1 with a fresh connection per call, as the SDK's pool opens them.
      const client = createClient(Process, envd.transport());
      let probing = true;
      const health: number[] = [];
      const probe = (async () => {
        while (probing) health.push((await envd.fetch("/health")).status);
      })();
      try {
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) => runToEnd(client, { process: { cmd: "/bin/sh", args: ["-c", `echo burst-${i}`] } })),
        );
        results.forEach((r, i) => {
          assert.equal(r.stdout, `burst-${i}\n`, `start ${i}`);
          assert.equal(r.end?.exitCode, 0, `start ${i}`);
        });
      } finally {
        probing = false;
        await probe;
      }
      assert.ok(health.length > 0, "at least one /health answered during the burst");
      assert.deepEqual([...new Set(health)], [204]);
    });

    test("the SDK closes a burst's connections once it no longer uses them (no Keep-Alive timeout advertised, as Go envd)", async () => {
      // Its own daemon: no other client holds connections to it.
      await using own = await startDaemon({ runtime });
      const sbx = await own.sandbox();
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => sbx.commands.run(`echo sdk-${i}`)));
      assert.deepEqual(
        results.map((r) => r.stdout),
        Array.from({ length: 20 }, (_, i) => `sdk-${i}\n`),
      );
      assert.ok(daemonConnections(own.port) > 1, "the burst's connections are open and idle in the SDK's pool");
      // undici keeps an idle connection 4 s unless the server advertises longer (640 s made it ten minutes).
      await eventually(() => daemonConnections(own.port) === 0, "the SDK to close its idle connections", 30_000);
    });
  });
}
