/**
 * The first request of each kind on a freshly started daemon (each loads what it needs on first
 * use: docs/architecture.md, "Loaded on first use"), timed one after the other on new
 * connections: the first Filesystem RPC (Stat), the first Process RPC (List), the first /files
 * download and upload, the first HTTP/2 request. Each with its status, so a first request that
 * fails shows. Used by bench/ab-start.ts and bench/figures/startup.ts.
 */
import { request } from "node:http";
import { rmSync } from "node:fs";
import { http2Status } from "../../test/e2e/harness.ts";

export type FirstRequests = Record<string, { ms: number; status: number }>;

export function http1(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
    });
    req.once("error", () => resolve(0));
    req.end(body);
  });
}

async function timed(fn: () => Promise<number>): Promise<{ ms: number; status: number }> {
  const a = performance.now();
  const status = await fn();
  return { ms: performance.now() - a, status };
}

const USER = { authorization: `Basic ${Buffer.from("root:").toString("base64")}` };

/** The first request of each kind, in an order where none warms up the next. */
export async function firstRequests(port: number): Promise<FirstRequests> {
  const out: FirstRequests = {};
  const connectJson = (svc: string, method: string, msg: unknown) =>
    http1(port, "POST", `/${svc}/${method}`, { "content-type": "application/json", ...USER }, Buffer.from(JSON.stringify(msg)));
  out.stat = await timed(() => connectJson("filesystem.Filesystem", "Stat", { path: "/tmp" }));
  out.list = await timed(() => connectJson("process.Process", "List", {}));
  out.download = await timed(() => http1(port, "GET", "/files?path=/etc/hostname&username=root"));
  const boundary = "b0undary";
  const body = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nhello\r\n--${boundary}--\r\n`);
  const uploaded = `/tmp/envd-first-upload-${port}`;
  out.upload = await timed(() =>
    http1(port, "POST", `/files?path=${uploaded}&username=root`, { "content-type": `multipart/form-data; boundary=${boundary}` }, body),
  );
  rmSync(uploaded, { force: true });
  out.h2 = await timed(() => http2Status(`http://127.0.0.1:${port}`, "/health").catch(() => 0));
  return out;
}

