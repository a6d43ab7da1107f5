/**
 * The transfer floor for the SDK: the simplest `/files` a runtime can serve, to measure what the
 * e2b SDK reaches when the server does nothing but move the bytes (the client's own ceiling on
 * this machine). POST streams the body into `path`; GET streams `path` back with its length.
 * No users, no atomic rename, no checks. Usage: `<runtime> bench/lib/bare-files.ts <port>`.
 */
import { createReadStream, createWriteStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { basename } from "node:path";
import { pipeline } from "node:stream/promises";

createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", "http://bare").searchParams.get("path") ?? "";
  try {
    if (req.method === "POST") {
      await pipeline(req, createWriteStream(path));
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify([{ path, name: basename(path), type: "file" }]));
    } else {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": statSync(path).size });
      if (req.method === "HEAD") return void res.end();
      await pipeline(createReadStream(path, { highWaterMark: 256 << 10 }), res);
    }
  } catch (err) {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(err));
  }
}).listen(Number(process.argv[2]), "127.0.0.1");
process.once("SIGTERM", () => process.exit(0));
