import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Process } from "../../src/gen/process/process_pb.js";
import { ROOT, RUNTIMES, eventually, runToEnd, startDaemon } from "./harness.ts";

const run = promisify(execFile);
const BIN = `${ROOT}/node_modules/.bin`;
const hi = { process: { cmd: "/bin/bash", args: ["-l", "-c", "echo hi"] }, stdin: false };

for (const runtime of RUNTIMES) {
  describe(`transport and protocol [${runtime}]`, () => {
    test("one port serves Connect (JSON, binary) over HTTP/1.1 and h2c, gRPC over h2c, and gRPC-Web", async () => {
      await using envd = await startDaemon({ runtime });
      const transports = {
        "connect+json h1": createConnectTransport({ baseUrl: envd.url, httpVersion: "1.1" }),
        "connect+proto h2c": createConnectTransport({ baseUrl: envd.url, httpVersion: "2", useBinaryFormat: true }),
        "connect+json h2c": createConnectTransport({ baseUrl: envd.url, httpVersion: "2" }),
        "grpc h2c": createGrpcTransport({ baseUrl: envd.url }),
        "grpc-web h1": createGrpcWebTransport({ baseUrl: envd.url, httpVersion: "1.1" }),
      };
      for (const [name, transport] of Object.entries(transports)) {
        const r = await runToEnd(createClient(Process, transport), hi);
        assert.equal(r.stdout, "hi\n", name);
        assert.equal(r.end?.exitCode, 0, name);
        const list = await createClient(Process, transport).list({});
        assert.ok(Array.isArray(list.processes), name);
      }
    });

    test("the wire format matches envd: enveloped JSON, base64 data, no exitCode key for 0, unknown fields ignored", async () => {
      await using envd = await startDaemon({ runtime });
      const body = JSON.stringify({ process: { cmd: "/bin/bash", args: ["-l", "-c", "echo hi"], futureField: 1 }, stdin: false, alsoUnknown: true });
      const frame = Buffer.alloc(5 + Buffer.byteLength(body));
      frame.writeUInt32BE(Buffer.byteLength(body), 1);
      frame.write(body, 5);
      const res = await envd.fetch("/process.Process/Start", {
        method: "POST",
        headers: { "content-type": "application/connect+json", "connect-protocol-version": "1" },
        body: frame,
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/connect+json");
      const buf = Buffer.from(await res.arrayBuffer());
      const messages: { flags: number; json: Record<string, unknown> }[] = [];
      for (let off = 0; off < buf.length; ) {
        const flags = buf[off] as number;
        const len = buf.readUInt32BE(off + 1);
        messages.push({ flags, json: JSON.parse(buf.subarray(off + 5, off + 5 + len).toString()) });
        off += 5 + len;
      }
      const start = messages[0]?.json as { event: { start: { pid: number } } };
      assert.ok(start.event.start.pid > 0);
      // Every data event carries its byte position (resumable streams, docs/compatibility.md;
      // int64 is a JSON string); clients without resume ignore the field, as the e2b SDK does.
      assert.deepEqual(messages[1]?.json, { event: { data: { stdout: "aGkK", offset: "0" } } });
      assert.deepEqual(messages[2]?.json, { event: { end: { exited: true, status: "exit status 0" } } });
      assert.equal(messages.at(-1)?.flags, 2);
      assert.deepEqual(messages.at(-1)?.json, {});
    });

    test("unary errors are Connect JSON with the mapped status; malformed bodies are invalid_argument", async () => {
      await using envd = await startDaemon({ runtime });
      const post = (path: string, body: string, type = "application/json") =>
        envd.fetch(path, { method: "POST", headers: { "content-type": type }, body });
      const nf = await post("/process.Process/SendSignal", JSON.stringify({ process: { pid: 999999 }, signal: "SIGNAL_SIGKILL" }));
      assert.equal(nf.status, 404);
      assert.deepEqual(await nf.json(), { code: "not_found", message: "process with pid 999999 not found" });
      const bad = await post("/process.Process/List", "{not json");
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { code: string }).code, "invalid_argument");
      const wrongType = await post("/process.Process/SendSignal", JSON.stringify({ process: { pid: "abc" } }));
      assert.equal(wrongType.status, 400);
      const huge = await post("/process.Process/SendSignal", JSON.stringify({ process: { pid: 2 ** 40 } }));
      assert.equal(huge.status, 400);
      const unknownMethod = await post("/process.Process/Nope", "{}");
      assert.equal(unknownMethod.status, 404);
      // gzip-compressed unary request
      const { gzipSync } = await import("node:zlib");
      const gz = await envd.fetch("/process.Process/List", {
        method: "POST",
        headers: { "content-type": "application/json", "content-encoding": "gzip" },
        body: gzipSync("{}"),
      });
      assert.equal(gz.status, 200);
      assert.deepEqual(await gz.json(), {});
      // still alive
      const r = await runToEnd(envd.process, hi);
      assert.equal(r.stdout, "hi\n");
    });

    test("REST: unknown path 404, wrong method 405, CORS preflight 204 without a token", async () => {
      await using envd = await startDaemon({ runtime });
      const nf = await envd.fetch("/nope");
      assert.equal(nf.status, 404);
      assert.equal(((await nf.json()) as { code: number }).code, 404);
      const wm = await envd.fetch("/health", { method: "DELETE" });
      assert.equal(wm.status, 405);
      const pre = await envd.fetch("/process.Process/Start", {
        method: "OPTIONS",
        headers: { origin: "https://example.com", "access-control-request-method": "POST", "access-control-request-headers": "content-type,x-access-token" },
      });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get("access-control-allow-origin"), "*");
      assert.match(pre.headers.get("access-control-allow-headers") ?? "", /x-access-token/);
      assert.equal(pre.headers.get("access-control-max-age"), "7200");
    });

    test("-flavor wrenn answers /health with 200 and the version, as the Wrenn host expects", async () => {
      await using envd = await startDaemon({ runtime, args: ["-flavor", "wrenn"] });
      const res = await envd.fetch("/health");
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { version: "0.6.4" });
    });

    test("h2c with prior knowledge answers REST routes too", async () => {
      await using envd = await startDaemon({ runtime });
      const session = http2.connect(envd.url);
      try {
        const status = await new Promise<number>((resolve, reject) => {
          const req = session.request({ ":path": "/health" });
          req.on("response", (h) => resolve(h[":status"] as number));
          req.on("error", reject);
          req.end();
        });
        assert.equal(status, 204);
      } finally {
        session.close();
      }
    });

    test("a client that stops reading never stalls the child or another subscriber", async () => {
      await using envd = await startDaemon({ runtime });
      // 64 MB of output, produced only after both subscribers are attached.
      const slow = envd.binary.process.start({ process: { cmd: "/bin/bash", args: ["-c", "read go; head -c 64000000 /dev/zero"] }, stdin: true, tag: "flood" })[Symbol.asyncIterator]();
      const first = await slow.next();
      const pid = (first.value as { event: { event: { value: { pid: number } } } }).event.event.value.pid;
      let fastBytes = 0;
      let fastEnd: number | undefined;
      let fastStarted = false;
      const fast = (async () => {
        for await (const res of envd.binary.process.connect({ process: { selector: { case: "pid", value: pid } } })) {
          const ev = res.event?.event;
          if (ev?.case === "start") fastStarted = true;
          if (ev?.case === "data") fastBytes += ev.value.output.value?.byteLength ?? 0;
          if (ev?.case === "end") fastEnd = ev.value.exitCode;
        }
      })();
      await eventually(() => fastStarted, "the second subscriber is attached");
      await envd.process.sendInput({ process: { selector: { case: "pid", value: pid } }, input: { input: { case: "stdin", value: Buffer.from("go\n") } } });
      await fast;
      assert.equal(fastEnd, 0);
      assert.equal(fastBytes, 64_000_000);
      // The stalled subscriber was detached: resuming it yields buffered data, then resource_exhausted.
      await assert.rejects(
        (async () => {
          for (let r = await slow.next(); !r.done; r = await slow.next()) {}
        })(),
        /resource_exhausted|detached/i,
      );
    });

    test("a sole subscriber that stops reading pauses the child (backpressure), and nothing is lost when it resumes", async () => {
      await using envd = await startDaemon({ runtime });
      const blocks = 300; // 300 × 64 KiB ≈ 19 MiB: far more than the fan-out queue and the socket buffers hold
      const stream = envd.binary.process.start({
        process: { cmd: "/bin/bash", args: ["-c", `for i in $(seq ${blocks}); do head -c 65536 /dev/zero; done`] },
      })[Symbol.asyncIterator]();
      const first = await stream.next();
      const pid = (first.value as { event: { event: { value: { pid: number } } } }).event.event.value.pid;
      // The writer ends up blocked writing to its stdout pipe while we do not read.
      await eventually(() => {
        const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
        return children.some((c) => {
          try {
            // a pipe (Bun) or a socketpair (Node) full of unread output
            return /pipe_write|sock_alloc_send|unix_stream|wait_for_unix/.test(readFileSync(`/proc/${c}/wchan`, "utf8"));
          } catch {
            return false;
          }
        });
      }, "the child blocked writing its stdout", 20_000);
      assert.ok((await envd.process.list({})).processes.some((p) => p.pid === pid), "still running while paused");
      let total = 0;
      let exitCode: number | undefined;
      for (let r = await stream.next(); !r.done; r = await stream.next()) {
        const ev = (r.value as { event?: { event: { case?: string; value?: unknown } } }).event?.event;
        if (ev?.case === "data") total += ((ev.value as { output: { value: Uint8Array } }).output.value).byteLength;
        if (ev?.case === "end") exitCode = (ev.value as { exitCode: number }).exitCode;
      }
      assert.equal(total, blocks * 65536);
      assert.equal(exitCode, 0);
    });

    test("-version and --version print the bare version; an unknown flag exits 2 with usage", async () => {
      for (const flag of ["-version", "--version"]) {
        const { stdout } = await run(`${BIN}/${runtime}`, [`${ROOT}/src/main.ts`, flag]);
        assert.equal(stdout, "0.6.4\n");
      }
      const { stdout } = await run(`${BIN}/${runtime}`, [`${ROOT}/src/main.ts`, "-commit"]);
      assert.ok(stdout.trim().length > 0);
      await assert.rejects(run(`${BIN}/${runtime}`, [`${ROOT}/src/main.ts`, "-nope"]), (err: { code: number; stderr: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr, /flag provided but not defined: -nope/);
        assert.match(err.stderr, /Usage: envd/);
        return true;
      });
    });

    test("logs are JSON lines and carry no process payloads", async () => {
      const envd = await startDaemon({ runtime });
      await runToEnd(envd.process, { process: { cmd: "/bin/echo", args: ["secret-payload-abc"] } });
      await envd[Symbol.asyncDispose]();
      assert.ok(envd.logs.some((l) => l.msg === "process started"));
      assert.ok(envd.logs.every((l) => typeof l.ts === "string" && typeof l.level === "string"));
      assert.ok(!JSON.stringify(envd.logs).includes("secret-payload-abc"));
    });
  });
}
