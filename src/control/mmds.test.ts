import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { createLogger } from "../log.ts";
import { MetadataPoller, type MmdsClient, type MmdsData, parseMmdsData } from "./mmds.ts";
import { Session } from "../session.ts";
import { flavorNames } from "./vm-config.ts";

test("parseMmdsData takes string fields only and ignores the rest", () => {
  assert.deepEqual(parseMmdsData('{"instanceID":"i","envID":7,"address":"http://c","extra":{"x":1}}'), {
    instanceID: "i",
    envID: undefined,
    address: "http://c",
    accessTokenHash: undefined,
  });
  assert.throws(() => parseMmdsData("[]"), /not a JSON object/);
  assert.throws(() => parseMmdsData("nope"));
});

test("the poller retries until a read succeeds, then sets and writes the ids once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mmds-"));
  try {
    const reads: (MmdsData | Error)[] = [
      new Error("not yet"),
      new Error("still not"),
      { instanceID: "sbx", envID: "tmpl", address: undefined, accessTokenHash: undefined },
    ];
    let calls = 0;
    const client = { read: async () => {
      const r = reads[Math.min(calls++, reads.length - 1)] as MmdsData | Error;
      if (r instanceof Error) throw r;
      return r;
    } } as unknown as MmdsClient;
    const session = new Session();
    const seen: MmdsData[] = [];
    const poller = new MetadataPoller({
      client,
      session,
      names: flavorNames("e2b"),
      runDir: dir,
      log: createLogger("error", () => {}),
      intervalMs: 1,
      onData: (d) => seen.push(d),
    });
    poller.start();
    while (poller.running) await new Promise((r) => setTimeout(r, 5));
    assert.equal(calls, 3);
    assert.equal(session.internalEnv.get("E2B_SANDBOX_ID"), "sbx");
    assert.equal(readFileSync(join(dir, ".E2B_TEMPLATE_ID"), "utf8"), "tmpl");
    assert.equal(seen.length, 1);
    // A time-limited poll that never succeeds gives up; stop() ends one at once.
    reads.length = 0;
    reads.push(new Error("gone"));
    poller.start(30);
    while (poller.running) await new Promise((r) => setTimeout(r, 5));
    poller.start();
    poller.stop();
    assert.equal(poller.running, false);
    assert.equal(session.internalEnv.get("E2B_SANDBOX_ID"), "sbx");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
