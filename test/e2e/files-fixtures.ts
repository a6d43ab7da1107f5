/**
 * Helpers for the /files suites: a throwaway user, small tmpfs mounts (a genuinely full disk),
 * multipart bodies built by hand, and raw HTTP/1.1 requests that can be cut off half-way.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { Daemon } from "./harness.ts";

export { gzipSync };

export interface TestUser extends Disposable {
  name: string;
  home: string;
  uid: number;
  gid: number;
}

/** A system user whose home is a fresh directory; removed (with the home) on dispose. */
export function createUser(prefix = "e2efiles"): TestUser {
  const name = `${prefix}${process.pid % 10000}${randomBytes(2).toString("hex")}`;
  const home = `/tmp/${name}-home`;
  execFileSync("useradd", ["-m", "-d", home, "-s", "/bin/sh", name]);
  const st = statSync(home);
  return {
    name,
    home,
    uid: st.uid,
    gid: st.gid,
    [Symbol.dispose]() {
      try {
        execFileSync("userdel", ["-r", "-f", name], { stdio: "ignore" });
      } catch {
        // already gone
      }
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** A directory under /tmp, removed on dispose. */
export function tempDir(prefix = "envd-files-"): { path: string } & Disposable {
  const path = mkdtempSync(join("/tmp", prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** A tmpfs of `size` (e.g. "1m") mounted on a fresh directory; unmounted and removed on dispose. */
export function mountTmpfs(size: string): { path: string } & Disposable {
  const path = mkdtempSync("/tmp/envd-tmpfs-");
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0777`, "tmpfs", path]);
  return {
    path,
    [Symbol.dispose]() {
      try {
        execFileSync("umount", [path]);
      } catch {
        execFileSync("umount", ["-l", path]);
      }
      rmSync(path, { recursive: true, force: true });
    },
  };
}

export function sha256(data: Buffer | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Names in `dir` that look like upload or compose leftovers. */
export function debris(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith(".e2b-upload-") || n.includes(".e2b-compose."));
}

export function mkdirp(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}

export interface FormPart {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer | string;
}

/** A multipart/form-data body and its Content-Type, built by hand so tests control every byte. */
export function multipartBody(parts: FormPart[], boundary = `----envd${randomBytes(8).toString("hex")}`) {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += "\r\n";
    if (p.contentType) head += `Content-Type: ${p.contentType}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`, "utf8"), Buffer.from(p.data), Buffer.from("\r\n"));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Starts a request on a raw socket: sends the head and `bodyPrefix`, and returns a function that
 * cuts the connection (without sending the rest) and resolves once the socket is closed.
 */
export async function partialRequest(envd: Daemon, head: string, bodyPrefix: Buffer): Promise<() => Promise<void>> {
  const socket = net.connect(envd.port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.write(head, () => resolve()));
  await new Promise<void>((resolve) => socket.write(bodyPrefix, () => resolve()));
  return async () => {
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.destroy();
    await closed;
  };
}

/** Decoded JSON body of a Response plus its status, for compact assertions. */
export async function jsonOf(res: Response): Promise<{ status: number; body: unknown; contentType: string | null }> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, contentType: res.headers.get("content-type") };
}

/** GET with identity encoding (fetch would otherwise ask for gzip and decode it silently). */
export const IDENTITY = { "accept-encoding": "identity" } as const;

/** A GET through node:http, which (unlike fetch) leaves the body encoded as sent. */
export function rawGet(
  envd: Daemon,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${envd.url}${path}`, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
}
