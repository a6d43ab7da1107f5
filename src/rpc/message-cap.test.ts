import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { WatchEngine } from "../fs/watch-engine.ts";
import { WatcherRegistry } from "../fs/watcher-registry.ts";
import { Filesystem } from "../gen/filesystem/filesystem_pb.js";
import { createLogger } from "../log.ts";
import { UserDb } from "../users/user-db.ts";
import { Session } from "../session.ts";
import { createFilesystemService } from "./filesystem-service.ts";
import { MAX_RESPONSE_MESSAGE_BYTES } from "./message-cap.ts";

const dir = mkdtempSync(join(tmpdir(), "envd-cap-"));
const watches = new WatchEngine(createLogger("error", () => {}));
after(async () => {
  await watches[Symbol.asyncDispose]();
  rmSync(dir, { recursive: true, force: true });
});

/** A Filesystem client over an in-memory transport whose responses may be at most `limit` bytes. */
function client(limit: number, binary: boolean) {
  const transport = createRouterTransport(
    (router) => {
      router.service(Filesystem, createFilesystemService({ users: new UserDb(), session: new Session(), watches, watchers: new WatcherRegistry(), maxResponseBytes: limit }));
    },
    { transport: { useBinaryFormat: binary } },
  );
  return createClient(Filesystem, transport);
}

describe("ListDir responses stay within the Connect message cap", () => {
  before(() => {
    for (let i = 0; i < 40; i++) writeFileSync(join(dir, `file-with-a-longish-name-${String(i).padStart(3, "0")}.txt`), "x");
  });

  test("the default cap is the Wrenn host's 16 MiB", () => {
    assert.equal(MAX_RESPONSE_MESSAGE_BYTES, 16 * 1024 * 1024);
  });

  for (const binary of [true, false]) {
    const codec = binary ? "binary" : "JSON";
    test(`${codec}: under the cap the listing is whole`, async () => {
      const r = await client(1 << 20, binary).listDir({ path: dir, depth: 1 });
      assert.equal(r.entries.length, 40);
    });

    test(`${codec}: over the cap, resource_exhausted naming the limit, nothing half`, async () => {
      await assert.rejects(client(2048, binary).listDir({ path: dir, depth: 1 }), (err: unknown) => {
        assert.ok(err instanceof ConnectError);
        assert.equal(err.code, Code.ResourceExhausted);
        assert.match(err.rawMessage, new RegExp(`listing ${dir} to depth 1 \\(40 entries\\) would be a \\d+-byte response, over the 2048-byte`));
        assert.match(err.rawMessage, /list with a smaller depth/);
        return true;
      });
    });
  }
});
