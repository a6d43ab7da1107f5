import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Filesystem } from "../../src/gen/filesystem/filesystem_pb.js";
import { Process } from "../../src/gen/process/process_pb.js";
import { getEnvs, postInit, sh } from "./control-fakes.ts";
import { type Daemon, RUNTIMES, startDaemon } from "./harness.ts";

const GATE_MESSAGE = "unauthorized access, please provide a valid access token or method signing if supported";
const TOKEN = "secret-token-0123456789";

/** Every RPC of both services, by its HTTP path. */
const RPC_PATHS = [
  ...["List", "Connect", "Start", "Update", "StreamInput", "SendInput", "SendSignal", "CloseStdin"].map((m) => `/process.Process/${m}`),
  ...["Stat", "MakeDir", "Move", "ListDir", "Remove", "WatchDir", "CreateWatcher", "GetWatcherEvents", "RemoveWatcher"].map(
    (m) => `/filesystem.Filesystem/${m}`,
  ),
];
/** Gated REST routes (and what is not a route: the gate comes first). */
const REST_ROUTES: [string, string][] = [
  ["GET", "/envs"],
  ["GET", "/metrics"],
  ["POST", "/files/compose"],
  ["HEAD", "/envs"],
  ["GET", "/no/such/route"],
  ["DELETE", "/files"],
  ["POST", "/health"],
];

async function expectGate(envd: Daemon, method: string, path: string, headers: Record<string, string>) {
  const streaming = /\/(Connect|Start|StreamInput|WatchDir)$/.test(path);
  const res = await envd.fetch(path, {
    method,
    headers: { "Content-Type": streaming ? "application/connect+json" : "application/json", ...headers },
    ...(method === "GET" || method === "HEAD" ? {} : { body: "{}" }),
  });
  assert.equal(res.status, 401, `${method} ${path}`);
  if (method === "HEAD") return;
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  assert.deepEqual(await res.json(), { code: 401, message: GATE_MESSAGE }, `${method} ${path}`);
}

async function rejectsUnauthenticated(p: Promise<unknown>, what: string) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ConnectError, `${what}: ${String(err)}`);
    assert.equal(err.code, Code.Unauthenticated, what);
    return true;
  });
}

async function drain(stream: AsyncIterable<unknown>) {
  for await (const _ of stream) {
    // the first message or the error is enough
  }
}

for (const runtime of RUNTIMES) {
  describe(`access token [${runtime}]`, () => {
    test("without a token everything is open", async () => {
      await using envd = await startDaemon({ runtime });
      assert.equal((await envd.fetch("/envs")).status, 200);
      assert.equal((await envd.fetch("/metrics")).status, 200);
      assert.equal((await envd.process.list({})).processes.length, 0);
      assert.equal(await sh(envd.process, "echo open"), "open\n");
    });

    test("with a token, every protected RPC and route refuses a missing or wrong one; exempt routes stay open", async () => {
      await using envd = await startDaemon({ runtime });
      assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      for (const path of RPC_PATHS) {
        await expectGate(envd, "POST", path, {});
        await expectGate(envd, "POST", path, { "X-Access-Token": "wrong" });
        await expectGate(envd, "POST", path, { "X-Access-Token": `${TOKEN}x` });
        await expectGate(envd, "POST", path, { "X-Access-Token": "" });
      }
      for (const [method, path] of REST_ROUTES) {
        await expectGate(envd, method, path, {});
        await expectGate(envd, method, path, { "X-Access-Token": TOKEN.slice(0, -1) });
      }

      // The Connect clients (JSON and binary) see unauthenticated on unary and streaming calls.
      for (const binary of [false, true]) {
        for (const headers of [{}, { "X-Access-Token": "wrong" }]) {
          const t = envd.transport({ binary, headers });
          const proc = createClient(Process, t);
          const fs = createClient(Filesystem, t);
          await rejectsUnauthenticated(proc.list({}), "List");
          await rejectsUnauthenticated(drain(proc.start({ process: { cmd: "true" } })), "Start");
          await rejectsUnauthenticated(drain(proc.connect({ process: { selector: { case: "pid", value: 1 } } })), "Connect");
          await rejectsUnauthenticated(proc.sendSignal({}), "SendSignal");
          await rejectsUnauthenticated(fs.stat({ path: "/" }), "Stat");
          await rejectsUnauthenticated(fs.listDir({ path: "/" }), "ListDir");
          await rejectsUnauthenticated(drain(fs.watchDir({ path: "/tmp" })), "WatchDir");
          await rejectsUnauthenticated(fs.createWatcher({ path: "/tmp" }), "CreateWatcher");
        }
      }

      // The right token passes, in any header case.
      const ok = envd.transport({ headers: { "x-access-token": TOKEN } });
      assert.equal(await sh(createClient(Process, ok), "echo authorised"), "authorised\n");
      assert.equal((await createClient(Filesystem, ok).stat({ path: "/" })).entry?.path, "/");
      assert.equal((await envd.fetch("/envs", { headers: { "X-Access-Token": TOKEN } })).status, 200);
      assert.equal((await envd.fetch("/metrics", { headers: { "X-Access-Token": TOKEN } })).status, 200);
      const compose = await envd.fetch("/files/compose", { method: "POST", headers: { "X-Access-Token": TOKEN }, body: "{" });
      assert.equal(compose.status, 400); // past the gate: the handler's own answer

      // Exempt: /health, /init (own token rules), /files (own token or signature rules), CORS preflight.
      assert.equal((await envd.fetch("/health")).status, 204);
      assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      for (const method of ["GET", "POST"]) {
        const res = await envd.fetch("/files?path=/etc/hostname", { method });
        const body = await res.text();
        assert.ok(!body.includes(GATE_MESSAGE), `${method} /files was stopped by the gate: ${body}`);
      }
      const preflight = await envd.fetch("/process.Process/List", {
        method: "OPTIONS",
        headers: { Origin: "https://example.com", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-access-token" },
      });
      assert.equal(preflight.status, 204);
    });

    test("the /init token rules without metadata: same token passes, another or none is refused and changes nothing", async () => {
      await using envd = await startDaemon({ runtime });
      assert.equal((await postInit(envd, { accessToken: TOKEN, envVars: { V: "1" } })).status, 204);
      assert.equal((await postInit(envd, { accessToken: TOKEN, envVars: { V: "2" } })).status, 204);
      const other = await postInit(envd, { accessToken: "another-token", envVars: { V: "3" } });
      assert.equal(other.status, 401);
      assert.deepEqual(await other.json(), { code: 401, message: "access token validation failed" });
      const none = await postInit(envd, { envVars: { V: "4" } });
      assert.equal(none.status, 401);
      assert.deepEqual(await none.json(), { code: 401, message: "access token reset not authorized" });
      assert.equal((await getEnvs(envd, TOKEN)).V, "2");
      assert.equal((await envd.fetch("/envs", { headers: { "X-Access-Token": "another-token" } })).status, 401);
    });

    test("the e2b SDK works with envdAccessToken and is refused without it", async () => {
      await using envd = await startDaemon({ runtime });
      assert.equal((await postInit(envd, { accessToken: TOKEN, envVars: { VAR: "sdk" } })).status, 204);
      const sbx = await envd.sandbox({ envdAccessToken: TOKEN });
      assert.equal((await sbx.commands.run("echo $VAR")).stdout, "sdk\n");
      await sbx.files.write("/tmp/envd-auth-sdk.txt", "written");
      assert.equal(await sbx.files.read("/tmp/envd-auth-sdk.txt"), "written");
      await sbx.files.remove("/tmp/envd-auth-sdk.txt");
      const anonymous = await envd.sandbox();
      await assert.rejects(anonymous.commands.run("echo no"), (err: Error) => {
        assert.equal(err.constructor.name, "AuthenticationError");
        return true;
      });
      await assert.rejects(anonymous.files.list("/"), (err: Error) => {
        assert.equal(err.constructor.name, "AuthenticationError");
        return true;
      });
    });
  });
}
