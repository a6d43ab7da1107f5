import assert from "node:assert/strict";
import { test } from "node:test";
import { LOG_LINE_MAX_BYTES, LogShipper, withIds } from "./log-shipper.ts";

const data = (address: string) => ({ instanceID: "sbx", envID: "tmpl", address, accessTokenHash: undefined });

test("lines wait for the collector address, then go one POST each with the ids added, in order", async () => {
  const posts: { url: string; body: string }[] = [];
  const shipper = new LogShipper(async (url, body) => {
    posts.push({ url, body });
  });
  shipper.write('{"msg":"one"}\n');
  shipper.write('{"msg":"two","instanceID":"spoofed"}\n');
  shipper.setTarget(data("")); // no address: nothing is shipped yet
  await new Promise((r) => setImmediate(r));
  assert.equal(posts.length, 0);
  shipper.setTarget(data("http://collector/logs"));
  shipper.write('{"msg":"three"}');
  await shipper.close(1_000);
  assert.deepEqual(
    posts.map((p) => JSON.parse(p.body)),
    [
      { msg: "one", instanceID: "sbx", envID: "tmpl" },
      { msg: "two", instanceID: "sbx", envID: "tmpl" },
      { msg: "three", instanceID: "sbx", envID: "tmpl" },
    ],
  );
  assert.ok(posts.every((p) => p.url === "http://collector/logs"));
  shipper.write('{"msg":"after close"}');
  assert.equal(posts.length, 3);
});

test("oversized lines, non-JSON lines and failed POSTs are dropped and counted", async () => {
  let calls = 0;
  const shipper = new LogShipper(async () => {
    calls++;
    if (calls === 1) throw new Error("collector down");
  });
  shipper.setTarget(data("http://collector"));
  shipper.write(`{"msg":"${"x".repeat(LOG_LINE_MAX_BYTES)}"}`);
  shipper.write("not json");
  shipper.write('{"msg":"fails"}');
  shipper.write('{"msg":"ok"}');
  await shipper.close(1_000);
  assert.equal(calls, 2);
  assert.equal(shipper.dropped, 3);
  assert.equal(withIds("[1]", "a", "b"), undefined);
});
