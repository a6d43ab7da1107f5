/**
 * Errors say what happened: malformed protobuf bodies are invalid_argument in every codec and on
 * every RPC, protocol mistakes get a body that says what is wrong, and server faults reach the log
 * with their cause.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { describe, test } from "node:test";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Filesystem } from "../../src/gen/filesystem/filesystem_pb.js";
import { Ports } from "../../src/gen/envd/ports_pb.js";
import { Process } from "../../src/gen/process/process_pb.js";
import { type Daemon, eventually, RUNTIMES, startDaemon } from "./harness.ts";

const SERVICES: DescService[] = [Process, Filesystem, Ports];
/** Field 1, length-delimited, with a length varint that never ends: "premature EOF". */
const MALFORMED = new Uint8Array([0x0a, 0xff]);
type Codec = "proto" | "json";
/** A body each codec cannot parse: a truncated length-delimited field, and broken JSON. */
const BAD: Record<Codec, Uint8Array> = { proto: MALFORMED, json: new TextEncoder().encode("{not json") };

function envelope(payload: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

function frames(body: Uint8Array): { flags: number; payload: Uint8Array }[] {
  const out = [];
  for (let off = 0; off + 5 <= body.length; ) {
    const len = new DataView(body.buffer, body.byteOffset + off + 1, 4).getUint32(0);
    out.push({ flags: body[off] as number, payload: body.subarray(off + 5, off + 5 + len) });
    off += 5 + len;
  }
  return out;
}

const isUnary = (m: DescMethod) => m.methodKind === "unary";
const path = (s: DescService, m: DescMethod) => `/${s.typeName}/${m.name}`;

/** Connect (unary or streaming), binary codec. Returns the Connect error code name. */
async function connectCode(envd: Daemon, s: DescService, m: DescMethod, codec: Codec = "proto"): Promise<{ status: number; code: string; message: string }> {
  const unary = isUnary(m);
  const bad = BAD[codec];
  const res = await envd.fetch(path(s, m), {
    method: "POST",
    headers: { "content-type": unary ? (codec === "json" ? "application/json" : "application/proto") : `application/connect+${codec}` },
    body: unary ? bad : envelope(bad),
  });
  const body = new Uint8Array(await res.arrayBuffer());
  if (unary) {
    const json = JSON.parse(Buffer.from(body).toString()) as { code: string; message: string };
    return { status: res.status, ...json };
  }
  const end = frames(body).find((f) => f.flags & 0x02);
  assert.ok(end, `${path(s, m)}: no end-of-stream envelope`);
  const json = JSON.parse(Buffer.from(end.payload).toString()) as { error: { code: string; message: string } };
  return { status: res.status, ...json.error };
}

/** gRPC-Web, binary: the grpc-status from the headers (trailers-only) or the trailer frame. */
async function grpcWebStatus(envd: Daemon, s: DescService, m: DescMethod, codec: Codec = "proto"): Promise<{ status: string; message: string }> {
  const res = await envd.fetch(path(s, m), {
    method: "POST",
    headers: { "content-type": `application/grpc-web+${codec}`, "x-grpc-web": "1" },
    body: envelope(BAD[codec]),
  });
  const body = new Uint8Array(await res.arrayBuffer());
  if (res.headers.get("grpc-status")) return { status: res.headers.get("grpc-status") as string, message: decodeURIComponent(res.headers.get("grpc-message") ?? "") };
  const trailer = frames(body).find((f) => f.flags & 0x80);
  assert.ok(trailer, `${path(s, m)}: no trailer frame`);
  const fields = Object.fromEntries(
    Buffer.from(trailer.payload)
      .toString()
      .split("\r\n")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(":")).trim().toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
  );
  return { status: fields["grpc-status"] as string, message: decodeURIComponent(fields["grpc-message"] ?? "") };
}

/** gRPC over h2c (prior knowledge). */
function grpcStatus(envd: Daemon, s: DescService, m: DescMethod, body: Uint8Array = envelope(MALFORMED), contentType = "application/grpc+proto"): Promise<{ status: string; message: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(envd.url);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path(s, m), "content-type": contentType, te: "trailers" });
    let headers: http2.IncomingHttpHeaders = {};
    req.on("response", (h) => {
      headers = h;
    });
    req.on("trailers", (t) => {
      headers = { ...headers, ...t };
    });
    req.on("data", () => {});
    req.on("end", () => {
      session.close();
      resolve({ status: String(headers["grpc-status"]), message: decodeURIComponent(String(headers["grpc-message"] ?? "")) });
    });
    req.on("error", reject);
    req.end(body);
  });
}

for (const runtime of RUNTIMES) {
  describe(`RPC errors (${runtime})`, () => {
    test("a malformed protobuf body is invalid_argument on every RPC, in Connect binary, gRPC-Web and gRPC", async () => {
      await using envd = await startDaemon({ runtime });
      for (const s of SERVICES) {
        for (const m of s.methods) {
          const c = await connectCode(envd, s, m);
          assert.equal(c.code, "invalid_argument", `Connect ${path(s, m)}: ${c.code} ${c.message}`);
          assert.equal(c.status, isUnary(m) ? 400 : 200, `Connect ${path(s, m)}`);
          assert.match(c.message, /parse binary|premature|decode/i);
          const w = await grpcWebStatus(envd, s, m);
          assert.equal(w.status, "3", `gRPC-Web ${path(s, m)}: ${w.status} ${w.message}`);
          const g = await grpcStatus(envd, s, m);
          assert.equal(g.status, "3", `gRPC ${path(s, m)}: ${g.status} ${g.message}`);
        }
      }
      // The daemon logged none of these as a server fault, and still answers.
      assert.deepEqual(envd.logs.filter((l) => l.level === "error"), []);
      assert.equal((await envd.process.list({})).processes.length, 0);
    });

    test("malformed JSON is invalid_argument too, on every RPC, in Connect JSON, gRPC-Web JSON and gRPC JSON", async () => {
      await using envd = await startDaemon({ runtime });
      const res = await envd.fetch("/filesystem.Filesystem/Stat", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { code: string }).code, "invalid_argument");
      for (const s of SERVICES) {
        for (const m of s.methods) {
          const c = await connectCode(envd, s, m, "json");
          assert.equal(c.code, "invalid_argument", `Connect JSON ${path(s, m)}: ${c.code} ${c.message}`);
          assert.equal(c.status, isUnary(m) ? 400 : 200, `Connect JSON ${path(s, m)}`);
          const w = await grpcWebStatus(envd, s, m, "json");
          assert.equal(w.status, "3", `gRPC-Web JSON ${path(s, m)}: ${w.status} ${w.message}`);
          const g = await grpcStatus(envd, s, m, envelope(BAD.json), "application/grpc+json");
          assert.equal(g.status, "3", `gRPC JSON ${path(s, m)}: ${g.status} ${g.message}`);
        }
      }
      assert.deepEqual(envd.logs.filter((l) => l.level === "error"), []);
    });

    test("unknown methods, wrong HTTP methods and unsupported content types answer with a body that says so", async () => {
      await using envd = await startDaemon({ runtime });
      const cases: [string, RequestInit, number, string, RegExp][] = [
        ["/process.Process/Nope", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }, 404, "unimplemented", /no such RPC method: \/process.Process\/Nope/],
        ["/filesystem.Filesystem/Nope", { method: "POST", headers: { "content-type": "application/proto" }, body: "" }, 404, "unimplemented", /no such RPC/],
        ["/filesystem.Filesystem/Stat", { method: "GET" }, 405, "unimplemented", /HTTP method GET/],
        ["/filesystem.Filesystem/Stat", { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" }, 415, "invalid_argument", /unsupported content type 'text\/plain'/],
        ["/filesystem.Filesystem/Stat", { method: "POST", body: "{}" }, 415, "invalid_argument", /unsupported content type/],
      ];
      for (const [p, init, status, code, message] of cases) {
        const res = await envd.fetch(p, init);
        assert.equal(res.status, status, p);
        assert.match(res.headers.get("content-type") ?? "", /application\/json/);
        const body = (await res.json()) as { code: string; message: string };
        assert.equal(body.code, code, p);
        assert.match(body.message, message);
      }
      // Our generated client maps them to codes, not to "unknown".
      const g = await grpcStatus(envd, Process, { ...Process.method.list, name: "Nope" } as DescMethod, envelope(new Uint8Array()), "application/grpc");
      assert.equal(g.status, "12");
      assert.match(g.message, /no such RPC method/);
    });

    test("a server fault on a REST route is logged once at error level with its cause (errno, syscall); client mistakes are not", async () => {
      await using envd = await startDaemon({ runtime });
      // Reading the daemon's own /proc/self/mem at offset 0 fails with EIO.
      // The answer is a 500 JSON error, or, when the failure comes after the headers, a dropped connection.
      const res = await envd.fetch("/files?path=/proc/self/mem", { headers: { "accept-encoding": "identity" } }).then((r) => r.text().then((t) => [r.status, t] as const)).catch((e: unknown) => e);
      if (Array.isArray(res)) assert.deepEqual([res[0], JSON.parse(res[1])], [500, { code: 500, message: "internal error" }]);
      else assert.match(String((res as Error).cause), /closed|terminated|reset/i);
      await envd.fetch("/files?path=/definitely/missing");
      const line = await eventually(() => envd.logs.find((l) => l.level === "error"), "the error log line");
      const logged = line.err as { code: string; syscall: string; errno: number };
      assert.equal(logged.code, "EIO");
      assert.equal(logged.syscall, "read");
      assert.equal(logged.errno, -5);
      assert.equal(envd.logs.filter((l) => l.level === "error").length, 1, "once, and not for the 404");
    });
  });
}
