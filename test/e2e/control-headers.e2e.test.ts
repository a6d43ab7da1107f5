/**
 * The newer /init answer headers (X-Envd-Defaults, X-Envd-Memory) and POST /collapse, as E2B's
 * orchestrator reads them.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { postInit } from "./control-fakes.ts";
import { RUNTIMES, startDaemon } from "./harness.ts";

const TOKEN = "headers-token-0123456789";

function memoryOf(res: Response): { request: number; low: number; floor: number; partial: boolean } {
  const raw = res.headers.get("x-envd-memory");
  assert.ok(raw, "X-Envd-Memory is set");
  const v = JSON.parse(raw) as Record<string, unknown>;
  assert.deepEqual(Object.keys(v), ["request", "low", "floor", "partial"]);
  for (const k of ["request", "low", "floor"]) assert.ok(Number.isInteger(v[k]) && (v[k] as number) >= 0, `${k} is a byte count`);
  assert.equal(typeof v.partial, "boolean");
  return v as { request: number; low: number; floor: number; partial: boolean };
}

function defaultsOf(res: Response): unknown {
  const raw = res.headers.get("x-envd-defaults");
  assert.ok(raw, "X-Envd-Defaults is set");
  return JSON.parse(raw);
}

for (const runtime of RUNTIMES) {
  describe(`/init headers and /collapse [${runtime}]`, () => {
    test("X-Envd-Defaults: root as a fallback until /init names a user; workdir once set; on errors too", async () => {
      await using envd = await startDaemon({ runtime });
      const first = await postInit(envd, {});
      assert.equal(first.status, 204);
      assert.deepEqual(defaultsOf(first), { user: "root", fallback: true });
      assert.equal(first.headers.get("x-envd-defaults"), '{"user":"root","fallback":true}');

      const bad = await postInit(envd, "{not json");
      assert.equal(bad.status, 400);
      assert.deepEqual(defaultsOf(bad), { user: "root", fallback: true });
      memoryOf(bad);

      const set = await postInit(envd, { defaultUser: "root", defaultWorkdir: "/tmp" });
      assert.equal(set.status, 204);
      // Delivered, even though it equals the built-in default.
      assert.equal(set.headers.get("x-envd-defaults"), '{"user":"root","workdir":"/tmp","fallback":false}');

      const refused = await postInit(envd, { defaultUser: "no-such-user-xyz" });
      assert.equal(refused.status, 400);
      assert.deepEqual(defaultsOf(refused), { user: "root", workdir: "/tmp", fallback: false });

      assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      const wrongToken = await postInit(envd, { accessToken: "another" });
      assert.equal(wrongToken.status, 401);
      assert.deepEqual(defaultsOf(wrongToken), { user: "root", workdir: "/tmp", fallback: false });
      memoryOf(wrongToken);
    });

    test("X-Envd-Memory without cgroups: zeros, partial", async () => {
      await using envd = await startDaemon({ runtime, args: ["-no-cgroups"] });
      const res = await postInit(envd, {});
      assert.equal(res.status, 204);
      assert.equal(res.headers.get("x-envd-memory"), '{"request":0,"low":0,"floor":0,"partial":true}');
    });

    test("POST /collapse: 200 with the counts of the daemon's own heap, behind the token gate", async () => {
      await using envd = await startDaemon({ runtime });
      const res = await envd.fetch("/collapse", { method: "POST" });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("cache-control"), "no-store");
      const body = (await res.json()) as Record<"regions" | "chunks" | "collapsed" | "alreadyHuge" | "skipped" | "elapsedMs", number>;
      assert.deepEqual(Object.keys(body).sort(), ["alreadyHuge", "chunks", "collapsed", "elapsedMs", "regions", "skipped"]);
      for (const v of Object.values(body)) assert.ok(Number.isInteger(v) && v >= 0);
      assert.ok(body.regions > 0, "the daemon has anonymous memory");
      assert.equal(body.chunks, body.collapsed + body.alreadyHuge + body.skipped);
      // A second collapse finds most of it done already (no new hugepages needed where the first made them).
      const again = (await (await envd.fetch("/collapse", { method: "POST" })).json()) as typeof body;
      assert.equal(again.chunks, again.collapsed + again.alreadyHuge + again.skipped);
      assert.equal((await envd.fetch("/health")).status, 204);

      assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      assert.equal((await envd.fetch("/collapse", { method: "POST" })).status, 401);
      assert.equal((await envd.fetch("/collapse", { method: "POST", headers: { "X-Access-Token": TOKEN } })).status, 200);
      assert.equal((await envd.fetch("/collapse")).status, 401); // the gate comes before the method check
    });
  });
}
