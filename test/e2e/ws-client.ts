/**
 * A real WebSocket client (the npm `ws` package, run by the test process under Node) for the
 * WebSocket routes, plus helpers the tunnel and exec suites share.
 */
import { WebSocket } from "ws";
import type { Daemon } from "./harness.ts";

export { WebSocket };

export type Opened = { ok: true; ws: WebSocket } | { ok: false; status: number; body: string; headers: Record<string, string | string[] | undefined> };

/** Opens `path` on the daemon as a WebSocket; a refused upgrade resolves with its HTTP answer. */
export function openWebSocket(envd: Daemon, path: string, headers: Record<string, string> = {}): Promise<Opened> {
  const ws = new WebSocket(`${envd.url.replace(/^http/, "ws")}${path}`, { headers, perMessageDeflate: false, maxPayload: 256 << 20 });
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ok: true, ws }));
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ ok: false, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on("error", reject);
    });
    ws.once("error", reject);
  });
}

/** Opens and insists it worked. */
export async function mustOpen(envd: Daemon, path: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const r = await openWebSocket(envd, path, headers);
  if (!r.ok) throw new Error(`upgrade to ${path} refused: ${r.status} ${r.body}`);
  return r.ws;
}

/** Resolves with the close code and reason. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve({ code: 1006, reason: "" });
  return new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
}

/** Polls `read` until `ok` holds, or throws after `ms`. */
export async function until<T>(read: () => T, ok: (v: T) => boolean, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(v)})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Polls a growing counter until it has stopped moving (the same value for `samples` looks
 * `everyMs` apart), within a deadline; returns the value it settled at. Used to see that a
 * producer is really blocked, not to wait for anything to happen.
 */
export async function settled(read: () => number, samples = 8, everyMs = 100, ms = 60_000): Promise<number> {
  const deadline = Date.now() + ms;
  let last = read();
  let same = 0;
  while (same < samples) {
    if (Date.now() > deadline) throw new Error(`counter never settled (at ${last})`);
    await new Promise((r) => setTimeout(r, everyMs));
    const now = read();
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return last;
}
