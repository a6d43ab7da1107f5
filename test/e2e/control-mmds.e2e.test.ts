import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { getEnvs, postInit, sh, startFakeMmds, tempDir } from "./control-fakes.ts";
import { eventually, RUNTIMES, startDaemon } from "./harness.ts";

const sha512 = (s: string) => createHash("sha512").update(s).digest("hex");
const FC = ["--isnotfc=false"];

for (const runtime of RUNTIMES) {
  describe(`metadata service (MMDS) [${runtime}]`, () => {
    test("polls with a session token until the metadata answers, then sets the ids and writes the run files", async () => {
      await using mmds = await startFakeMmds({ instanceID: "sbx-123", envID: "tmpl-456", address: "", accessTokenHash: "", extra: { nested: [1, 2] } });
      mmds.failNext = 6; // the first attempts fail: the poller must keep going
      const runDir = tempDir("run");
      await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: runDir } });
      const envs = await eventually(async () => {
        const e = await getEnvs(envd);
        return e.E2B_SANDBOX_ID ? e : undefined;
      }, "E2B_SANDBOX_ID");
      assert.deepEqual(envs, { E2B_SANDBOX: "true", E2B_SANDBOX_ID: "sbx-123", E2B_TEMPLATE_ID: "tmpl-456" });
      assert.equal(readFileSync(join(runDir, ".E2B_SANDBOX_ID"), "utf8"), "sbx-123");
      assert.equal(readFileSync(join(runDir, ".E2B_TEMPLATE_ID"), "utf8"), "tmpl-456");
      assert.equal(statSync(join(runDir, ".E2B_SANDBOX_ID")).mode & 0o777, 0o666);
      assert.equal(readFileSync(join(runDir, ".E2B_SANDBOX"), "utf8"), "true");
      assert.equal(statSync(join(runDir, ".E2B_SANDBOX")).mode & 0o777, 0o444);
      assert.equal(await sh(envd.process, "echo $E2B_SANDBOX $E2B_SANDBOX_ID $E2B_TEMPLATE_ID"), "true sbx-123 tmpl-456\n");
      // The protocol: PUT the token with a TTL, then GET / with it, asking for JSON, no keep-alive.
      const put = mmds.requests.find((r) => r.method === "PUT" && r.url === "/latest/api/token");
      assert.equal(put?.headers["x-metadata-token-ttl-seconds"], "60");
      const get = mmds.requests.find((r) => r.method === "GET" && r.headers["x-metadata-token"] === mmds.token);
      assert.equal(get?.headers.accept, "application/json");
      assert.notEqual(get?.headers.connection, "keep-alive");
      // Once read, polling stops.
      const seen = mmds.requests.length;
      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal(mmds.requests.length, seen);
    });

    test("the daemon's log lines go to the collector named by the metadata, with the ids added", async () => {
      await using mmds = await startFakeMmds({ instanceID: "sbx-logs", envID: "tmpl-logs" });
      mmds.data = { instanceID: "sbx-logs", envID: "tmpl-logs", address: `${mmds.url}/logs` };
      {
        await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
        // Lines from before the metadata was read are shipped too ("listening" is logged at start).
        await eventually(() => mmds.logs.some((l) => (JSON.parse(l.body) as { msg: string }).msg === "listening"), "the listening line");
        assert.equal((await postInit(envd, { envVars: { X: "1" } })).status, 204);
        await eventually(() => mmds.logs.some((l) => (JSON.parse(l.body) as { msg: string }).msg === "init applied"), "the init line");
      }
      // Shutdown flushes what is left: the last line arrives before the daemon exits.
      assert.ok(mmds.logs.some((l) => (JSON.parse(l.body) as { msg: string }).msg === "stopped"));
      for (const l of mmds.logs) {
        assert.equal(l.contentType, "application/json");
        const rec = JSON.parse(l.body) as Record<string, unknown>;
        assert.equal(rec.instanceID, "sbx-logs");
        assert.equal(rec.envID, "tmpl-logs");
        assert.equal(typeof rec.level, "string");
      }
    });

    test("missing and extra fields are tolerated, and a later read without an id keeps the old one", async () => {
      await using mmds = await startFakeMmds({ instanceID: "only-the-sandbox", envID: 42, somethingNew: true });
      const runDir = tempDir("run");
      await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: runDir } });
      await eventually(async () => (await getEnvs(envd)).E2B_SANDBOX_ID === "only-the-sandbox", "sandbox id");
      assert.equal((await getEnvs(envd)).E2B_TEMPLATE_ID, undefined);
      assert.equal(existsSync(join(runDir, ".E2B_TEMPLATE_ID")), false);
      // /init starts a re-poll (as after a resume): new ids apply, a missing one keeps its value.
      mmds.data = { instanceID: "", envID: "tmpl-after-resume" };
      assert.equal((await postInit(envd, {})).status, 204);
      await eventually(async () => (await getEnvs(envd)).E2B_TEMPLATE_ID === "tmpl-after-resume", "template id after /init");
      assert.equal((await getEnvs(envd)).E2B_SANDBOX_ID, "only-the-sandbox");
    });

    test("a document that is not a JSON object is not taken; polling goes on until one is", async () => {
      await using mmds = await startFakeMmds("this is not json");
      await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
      await eventually(() => mmds.requests.filter((r) => r.method === "GET").length >= 3, "several reads");
      assert.equal((await getEnvs(envd)).E2B_SANDBOX_ID, undefined);
      mmds.data = { instanceID: "finally" };
      await eventually(async () => (await getEnvs(envd)).E2B_SANDBOX_ID === "finally", "sandbox id");
    });

    test("Wrenn flavor: WRENN_* variables and files", async () => {
      await using mmds = await startFakeMmds({ instanceID: "w-sbx", envID: "w-tmpl" });
      const runDir = tempDir("wrenn-run");
      await using envd = await startDaemon({ runtime, args: [...FC, "--flavor", "wrenn"], env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: runDir } });
      await eventually(async () => (await getEnvs(envd)).WRENN_SANDBOX_ID === "w-sbx", "WRENN_SANDBOX_ID");
      assert.deepEqual(await getEnvs(envd), { WRENN_SANDBOX: "true", WRENN_SANDBOX_ID: "w-sbx", WRENN_TEMPLATE_ID: "w-tmpl" });
      assert.equal(readFileSync(join(runDir, ".WRENN_SANDBOX_ID"), "utf8"), "w-sbx");
      assert.equal(readFileSync(join(runDir, ".WRENN_TEMPLATE_ID"), "utf8"), "w-tmpl");
      assert.equal(readFileSync(join(runDir, ".WRENN_SANDBOX"), "utf8"), "true");
    });

    test("-isnotfc: the metadata service is never asked, and the marker says false", async () => {
      await using mmds = await startFakeMmds({ instanceID: "never", accessTokenHash: sha512("t") });
      const runDir = tempDir("run");
      {
        await using envd = await startDaemon({ runtime, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: runDir } });
        assert.equal((await postInit(envd, { accessToken: "first" })).status, 204);
        // Rotation needs the metadata hash, which is not consulted here.
        assert.equal((await postInit(envd, { accessToken: "t" })).status, 401);
        assert.deepEqual(await getEnvs(envd, "first"), { E2B_SANDBOX: "false" });
      }
      assert.equal(mmds.requests.length, 0);
      assert.equal(readFileSync(join(runDir, ".E2B_SANDBOX"), "utf8"), "false");
    });

    test("the access token rotates and resets only as the metadata hash allows", async () => {
      await using mmds = await startFakeMmds({ instanceID: "sbx", accessTokenHash: "" });
      await using envd = await startDaemon({ runtime, args: FC, env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
      // Empty hash and nothing stored: first setup.
      assert.equal((await postInit(envd, { accessToken: "t1" })).status, 204);
      // Another token, with the hash of another token still: refused.
      mmds.data = { instanceID: "sbx", accessTokenHash: sha512("t3") };
      const refused = await postInit(envd, { accessToken: "t2" });
      assert.equal(refused.status, 401);
      assert.equal(((await refused.json()) as { message: string }).message, "access token validation failed");
      // The host publishes SHA-512(t2): the resume's /init may switch to t2.
      mmds.data = { instanceID: "sbx", accessTokenHash: sha512("t2") };
      assert.equal((await postInit(envd, { accessToken: "t2", envVars: { AFTER: "rotation" } })).status, 204);
      assert.equal((await envd.fetch("/envs", { headers: { "X-Access-Token": "t1" } })).status, 401);
      assert.equal((await getEnvs(envd, "t2")).AFTER, "rotation");
      // No token and no authorisation: refused; with SHA-512("") published: the token is cleared.
      assert.equal((await postInit(envd, {})).status, 401);
      mmds.data = { instanceID: "sbx", accessTokenHash: sha512("") };
      assert.equal((await postInit(envd, {})).status, 204);
      assert.equal((await envd.fetch("/envs")).status, 200);
    });

    test("a caller that leaves during the metadata lookup sets no token (no first-setup fallback)", async () => {
      await using mmds = await startFakeMmds({ instanceID: "sbx", accessTokenHash: sha512("the-real-token") });
      await using envd = await startDaemon({ runtime, args: [...FC, "--log-level", "debug"], env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
      await eventually(async () => (await getEnvs(envd)).E2B_SANDBOX_ID === "sbx", "boot read");
      let release: () => void = () => {};
      mmds.hold = new Promise<void>((r) => {
        release = r;
      });
      const gets = mmds.requests.filter((r) => r.method === "GET").length;
      const controller = new AbortController();
      const sneaky = postInit(envd, { accessToken: "not-the-real-token" }, {}, controller.signal);
      await eventually(() => mmds.requests.filter((r) => r.method === "GET").length > gets, "the lookup");
      controller.abort();
      await assert.rejects(sneaky);
      await eventually(() => envd.logs.some((l) => l.msg === "route error" && l.path === "/init"), "the cancelled /init");
      release();
      mmds.hold = undefined;
      assert.equal((await envd.fetch("/envs")).status, 200, "no token may have been set");
      assert.equal((await postInit(envd, { accessToken: "the-real-token" })).status, 204);
      assert.equal((await envd.fetch("/envs")).status, 401);
    });

    test("a caller that leaves while another /init holds the lock changes nothing", async () => {
      await using mmds = await startFakeMmds({ instanceID: "sbx", accessTokenHash: "" });
      await using envd = await startDaemon({ runtime, args: [...FC, "--log-level", "debug"], env: { ENVD_MMDS_URL: mmds.url, ENVD_RUN_DIR: tempDir("run") } });
      assert.equal((await postInit(envd, { accessToken: "t1" })).status, 204);
      // The next /init needs the metadata hash; the fake holds that read, so the /init holds the lock.
      let release: () => void = () => {};
      mmds.hold = new Promise<void>((r) => {
        release = r;
      });
      mmds.data = { instanceID: "sbx", accessTokenHash: sha512("t2") };
      const gets = mmds.requests.filter((r) => r.method === "GET").length;
      const first = postInit(envd, { accessToken: "t2", envVars: { X: "first" } });
      await eventually(() => mmds.requests.filter((r) => r.method === "GET").length > gets, "the first /init reading the metadata");
      // A second /init (that would succeed) waits for the lock; its caller gives up.
      const controller = new AbortController();
      const second = postInit(envd, { accessToken: "t2", envVars: { X: "second" } }, {}, controller.signal);
      await eventually(() => envd.logs.some((l) => l.msg === "init waits for another /init"), "the second /init waiting");
      controller.abort();
      await assert.rejects(second);
      await eventually(() => envd.logs.some((l) => l.msg === "init abandoned while waiting for another /init"), "the abandoned /init");
      release();
      mmds.hold = undefined;
      assert.equal((await first).status, 204);
      assert.deepEqual(await getEnvs(envd, "t2"), { E2B_SANDBOX: "true", E2B_SANDBOX_ID: "sbx", X: "first" });
    });
  });
}
