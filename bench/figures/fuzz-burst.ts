/**
 * Memory after abuse: the daemon's RSS idle, right after a burst of malformed requests, and
 * `restMs` later (the heap trimmer's job), against the target "≤ 1.5 × idle after 60 s".
 *
 *   node bench/figures/fuzz-burst.ts [--runtime bun|node] [--requests 10000] [--rest-ms 60000]
 *
 * The burst mixes what an adversarial client sends, over keep-alive connections (16 at a time)
 * and fresh ones: malformed protobuf to every codec (Connect unary and streaming, gRPC-Web),
 * broken JSON, unknown methods, wrong content types, truncated and oversized multipart uploads,
 * bad gzip, garbage request lines. Every answer is read; the daemon must still answer /health.
 */
import net from "node:net";
import { parseArgs } from "node:util";
import { type Runtime, startDaemon } from "../../test/e2e/harness.ts";
import { memoryOf, sleep } from "../lib/measure.ts";

export interface FuzzBurst {
  requests: number;
  seconds: number;
  idleRssMiB: number;
  afterBurstRssMiB: number;
  /** RSS `restMs` after the burst. */
  afterRestRssMiB: number;
  /** The heap part (RssAnon) idle and after the rest; the rest is file-backed (the runtime's code pages). */
  idleAnonMiB: number;
  afterRestAnonMiB: number;
  /** RSS after a second, identical burst and rest: above afterRest only if something leaks per request. */
  afterSecondRestRssMiB: number;
  restMs: number;
  /** afterRest / idle; the target is ≤ 1.5. */
  ratio: number;
}

const MALFORMED = new Uint8Array([0x0a, 0xff]);
const envelope = (payload: Uint8Array) => {
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
};

export type Shot = { path: string; init: RequestInit } | { raw: string };

export function shots(dir: string): Shot[] {
  const post = (path: string, contentType: string | undefined, body: string | Uint8Array, extra: Record<string, string> = {}): Shot => ({
    path,
    init: { method: "POST", headers: { ...(contentType ? { "content-type": contentType } : {}), ...extra }, body: body as NonNullable<RequestInit["body"]> },
  });
  const boundary = "----fuzz";
  return [
    post("/process.Process/List", "application/proto", MALFORMED),
    post("/process.Process/Start", "application/connect+proto", envelope(MALFORMED)),
    post("/filesystem.Filesystem/Stat", "application/grpc-web+proto", envelope(MALFORMED)),
    post("/filesystem.Filesystem/ListDir", "application/json", "{not json"),
    post("/filesystem.Filesystem/Stat", "application/json", JSON.stringify({ path: "x".repeat(5000) })),
    post("/process.Process/Nope", "application/json", "{}"),
    post("/filesystem.Filesystem/Stat", "text/plain", "hello"),
    post("/process.Process/Start", "application/connect+json", new Uint8Array([0, 0, 0, 0, 100, 123])),
    post(`/files?path=${dir}/m.bin`, `multipart/form-data; boundary=${boundary}`, `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n${"a".repeat(2000)}`),
    post(`/files?path=${dir}/g.bin`, "application/octet-stream", "definitely not gzip", { "content-encoding": "gzip" }),
    post(`/files?path=${dir}/o.bin`, "application/octet-stream", "x".repeat(100), { "x-metadata-": "bad" }),
    post("/files/compose", "application/json", "[}"),
    post("/init", "application/json", "{\"envVars\": 5}"),
    { path: "/nope", init: { method: "DELETE" } },
    { path: `/files?path=${dir}/missing&signature_expiration=abc`, init: {} },
    { raw: "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" },
    { raw: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n" },
    { raw: `POST /process.Process/Start HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+json\r\nContent-Length: 100000\r\n\r\n${"{".repeat(500)}` },
  ];
}

export function rawShot(port: number, text: string): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => s.end(text));
    s.setTimeout(2_000, () => s.destroy());
    s.on("data", () => {});
    s.on("close", () => resolve());
    s.on("error", () => resolve());
  });
}

export async function measureFuzzBurst(
  runtime: Runtime,
  opts: { requests: number; restMs: number; settleMs?: number; only?: [from: number, to: number] },
): Promise<FuzzBurst> {
  await using envd = await startDaemon({ runtime });
  const dir = `/tmp/envd-fuzz-${process.pid}`;
  await sleep(opts.settleMs ?? 5_000);
  const idleMemory = memoryOf(envd.pid);
  const idle = idleMemory.rssMiB;
  const list = opts.only ? shots(dir).slice(opts.only[0], opts.only[1]) : shots(dir);
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < opts.requests; i = next++) {
      const shot = list[i % list.length] as Shot;
      if ("raw" in shot) await rawShot(envd.port, shot.raw);
      else {
        const res = await envd.fetch(shot.path, shot.init).catch(() => undefined);
        await res?.arrayBuffer().catch(() => undefined);
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const seconds = (Date.now() - started) / 1000;
  const afterBurst = memoryOf(envd.pid).rssMiB;
  const health = await envd.fetch("/health");
  if (!health.ok) throw new Error(`the daemon stopped answering /health after the burst: ${health.status}`);
  await sleep(opts.restMs);
  const afterRestMemory = memoryOf(envd.pid);
  const afterRest = afterRestMemory.rssMiB;
  next = 0;
  await Promise.all(Array.from({ length: 16 }, worker));
  await sleep(opts.restMs);
  const afterSecondRest = memoryOf(envd.pid).rssMiB;
  return {
    idleAnonMiB: idleMemory.anonMiB,
    afterRestAnonMiB: afterRestMemory.anonMiB,
    afterSecondRestRssMiB: afterSecondRest,
    requests: opts.requests,
    seconds,
    idleRssMiB: idle,
    afterBurstRssMiB: afterBurst,
    afterRestRssMiB: afterRest,
    restMs: opts.restMs,
    ratio: Number((afterRest / idle).toFixed(2)),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      runtime: { type: "string", default: "bun" },
      requests: { type: "string", default: "10000" },
      "rest-ms": { type: "string", default: "60000" },
      /** While hunting a leak: only shots [from, to) of the list. */
      only: { type: "string" },
    },
  });
  const only = values.only?.split(",").map(Number) as [number, number] | undefined;
  const result = await measureFuzzBurst(values.runtime as Runtime, {
    requests: Number(values.requests),
    restMs: Number(values["rest-ms"]),
    ...(only ? { only } : {}),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
