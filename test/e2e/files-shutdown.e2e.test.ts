/**
 * SIGTERM while an upload is in flight: the upload is answered 503 with a JSON reason (or its
 * connection closes), the temporary file is removed, the target is untouched, and the daemon logs
 * it at info, not as an error.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { eventually, RUNTIMES, startDaemon } from "./harness.ts";

for (const runtime of RUNTIMES) {
  describe(`uploads during shutdown (${runtime})`, () => {
    test("SIGTERM mid-upload: 503 JSON, temporary file removed, old content kept, logged at info", async () => {
      const dir = mkdtempSync(join(tmpdir(), "envd-shutdown-upload-"));
      try {
        writeFileSync(join(dir, "target.bin"), "old");
        await using envd = await startDaemon({ runtime });
        let send!: (c: Uint8Array) => void;
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            send = (chunk) => c.enqueue(chunk);
          },
        });
        const answer = envd
          .fetch(`/files?path=${encodeURIComponent(join(dir, "target.bin"))}`, {
            method: "POST",
            headers: { "content-type": "application/octet-stream" },
            body,
            duplex: "half",
          } as RequestInit)
          .then(async (r) => ({ status: r.status, body: await r.text() }))
          .catch((e: unknown) => ({ status: 0, body: String((e as Error).cause ?? e) }));
        send(Buffer.alloc(64 * 1024, "x"));
        const temp = await eventually(() => readdirSync(dir).find((n) => n.startsWith(".e2b-upload-")), "the temporary file");
        const exit = envd.stop("SIGTERM");
        const res = await answer;
        if (res.status !== 0) {
          assert.equal(res.status, 503, res.body);
          assert.deepEqual(JSON.parse(res.body), { code: 503, message: "the daemon is shutting down" });
        } else assert.match(res.body, /closed|terminated|reset/i);
        assert.equal(await exit, 0);
        assert.equal(existsSync(join(dir, temp)), false, "the temporary file is removed");
        assert.equal(readFileSync(join(dir, "target.bin"), "utf8"), "old");
        assert.deepEqual(envd.logs.filter((l) => l.level === "error"), []);
        if (res.status === 503) assert.ok(envd.logs.some((l) => l.level === "info" && l.msg === "request ended by the shutdown"));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
