/**
 * The auth table (src/http/auth-table.ts, docs/auth.md), row by row, in both flavors: no token,
 * a wrong token and the right one. Plus the snapshot door: an unauthenticated client can no
 * longer arm a restore that resets other clients' streams.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type Access, REST_AUTH, RPC_AUTH } from "../../src/http/auth-table.ts";
import { RPC_SERVICES } from "../../src/rpc/services.ts";
import { postInit } from "./control-fakes.ts";
import { type Daemon, eventually, RUNTIMES, startDaemon } from "./harness.ts";

const TOKEN = "auth-table-token-0123456789";
const GATE = "unauthorized access, please provide a valid access token or method signing if supported";

/** A request each route answers without side effects that matter here. */
function requestFor(method: string, path: string, dir: string): { url: string; init: RequestInit } {
  switch (`${method} ${path}`) {
    case "GET /files":
      return { url: "/files?path=/etc/hostname", init: {} };
    case "POST /files":
      return { url: `/files?path=${encodeURIComponent(join(dir, "up.txt"))}`, init: { method, headers: { "content-type": "application/octet-stream" }, body: "x" } };
    case "POST /init":
      return { url: path, init: { method, headers: { "content-type": "application/json" }, body: "{}" } };
    default:
      return { url: path, init: { method, ...(method === "POST" ? { headers: { "content-type": "application/json" }, body: "{}" } : {}) } };
  }
}

async function call(envd: Daemon, url: string, init: RequestInit, token: string | undefined, initToken?: string) {
  const headers = new Headers(init.headers);
  if (token !== undefined) headers.set("x-access-token", token);
  let body = init.body;
  // /init's own check reads the body's token: send the one of this attempt.
  if (url === "/init" && initToken !== undefined) body = JSON.stringify({ accessToken: initToken });
  // A stream that got past the gate may hold its headers until its first message: still not a 401.
  const res = await envd.fetch(url, { ...init, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(3_000) }).catch((err: unknown) => err);
  if (!(res instanceof Response)) {
    if ((res as Error).name === "TimeoutError") return { status: 0, text: "no answer within 3 s: past the gate" };
    throw res;
  }
  const text = res.headers.get("content-type")?.includes("json") && !res.headers.get("content-type")?.includes("connect+") ? await res.text() : "";
  await res.body?.cancel().catch(() => {});
  return { status: res.status, text };
}

async function expectRow(what: string, access: Access, attempt: (token: string | undefined, initToken?: string) => ReturnType<typeof call>) {
  const none = await attempt(undefined);
  const wrong = await attempt(`${TOKEN}-wrong`, `${TOKEN}-wrong`);
  const right = await attempt(TOKEN, TOKEN);
  switch (access) {
    case "token":
      for (const [label, r] of [["no token", none], ["wrong token", wrong]] as const) {
        assert.equal(r.status, 401, `${what}, ${label}`);
        assert.equal(JSON.parse(r.text).message, GATE, `${what}, ${label}`);
      }
      assert.notEqual(right.status, 401, `${what}, right token: ${right.text}`);
      return;
    case "open":
      for (const r of [none, wrong, right]) assert.notEqual(r.status, 401, `${what}: ${r.text}`);
      return;
    case "own-check":
      for (const [label, r] of [["no token", none], ["wrong token", wrong]] as const) {
        assert.equal(r.status, 401, `${what}, ${label}`);
        assert.notEqual(JSON.parse(r.text).message, GATE, `${what}, ${label}: the route's own check answers`);
      }
      assert.notEqual(right.status, 401, `${what}, right token: ${right.text}`);
      return;
    case "absent":
      assert.ok([401, 404, 405].includes(right.status), `${what} should not exist`);
  }
}

for (const runtime of RUNTIMES) {
  for (const flavor of ["e2b", "wrenn"] as const) {
    describe(`auth table, ${flavor} flavor (${runtime})`, () => {
      let envd: Daemon;
      let dir: string;
      before(async () => {
        dir = mkdtempSync(join(tmpdir(), "envd-auth-"));
        // The right token really runs POST /memory/preload: give it a 128 KiB "RAM" to walk, never
        // this machine's (docs: the development machine is itself a VM whose host backs each page).
        writeFileSync(join(dir, "iomem"), "00000000-0000ffff : Reserved\n00010000-0002ffff : System RAM\n");
        writeFileSync(join(dir, "mem"), Buffer.alloc(0x30000));
        writeFileSync(join(dir, "drop_caches"), "");
        const env = { ENVD_IOMEM_PATH: join(dir, "iomem"), ENVD_DEV_MEM_PATH: join(dir, "mem"), ENVD_KCORE_PATH: join(dir, "no-kcore"), ENVD_RUN_DIR: join(dir, "run"), ENVD_DROP_CACHES_PATH: join(dir, "drop_caches"), ENVD_FSTRIM_COMMAND: "true" };
        envd = await startDaemon({ runtime, args: ["--flavor", flavor, "--no-cgroups"], env });
        assert.equal((await postInit(envd, { accessToken: TOKEN })).status, 204);
      });
      after(async () => {
        await envd[Symbol.asyncDispose]();
        rmSync(dir, { recursive: true, force: true });
      });

      test("every REST row: no token, wrong token, right token", async () => {
        for (const row of REST_AUTH) {
          const { url, init } = requestFor(row.method, row.path, dir);
          await expectRow(`${row.method} ${row.path}`, row[flavor], (token, initToken) => call(envd, url, init, token, initToken));
          if (row.path === "/freeze" || row.path === "/snapshot/prepare") {
            // Undo the quiesce the right token just ran, so later rows meet a normal daemon.
            await call(envd, row.path === "/freeze" ? "/unfreeze" : "/health", { method: row.path === "/freeze" ? "POST" : "GET" }, TOKEN);
          }
        }
      });

      test("every RPC method of every mounted service: no token, wrong token, right token", async () => {
        for (const service of RPC_SERVICES) {
          const access = RPC_AUTH.find((r) => r.service === service.typeName)?.[flavor] ?? "token";
          // The descriptor is imported here as the daemon imports it on the service's first call.
          for (const m of (await service.descriptor()).methods) {
            const streaming = m.methodKind !== "unary";
            // The right token runs the method for real: every path it names lies in this test's own
            // directory. An empty message would mean path "" (the user's home, /root here), and a
            // Remove of that deletes root's home directory.
            const json = JSON.stringify(probeMessage(service.typeName, m.name, dir));
            const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), Buffer.from(json)]);
            envelope.writeUInt32BE(envelope.length - 5, 1);
            const init: RequestInit = {
              method: "POST",
              headers: { "content-type": streaming ? "application/connect+json" : "application/json" },
              body: streaming ? new Uint8Array(envelope) : json,
            };
            await expectRow(`/${service.typeName}/${m.name}`, access, (token) => call(envd, `/${service.typeName}/${m.name}`, init, token));
          }
        }
      });

      test("the snapshot door: without the token nobody can arm a restore that resets other clients", async () => {
        // Another client's command stream, open across the attempts.
        const stream = envd.process.start({ process: { cmd: "/bin/sh", args: ["-c", "while true; do echo tick; sleep 0.1; done"] } }, { headers: { "x-access-token": TOKEN } });
        const it = stream[Symbol.asyncIterator]();
        const first = await it.next();
        assert.equal(first.value?.event?.event.case, "start");
        const pid = first.value?.event?.event.case === "start" ? first.value.event.event.value.pid : 0;
        const prepare = await envd.fetch("/snapshot/prepare", { method: "POST" });
        const restoresBefore = envd.logs.filter((l) => l.msg === "restored after snapshot").length;
        if (flavor === "e2b") {
          assert.equal(prepare.status, 401, "e2b: prepare needs the token");
          assert.equal((await envd.fetch("/health")).status, 204);
          // The stream still flows: nothing was reset.
          const next = await it.next();
          assert.equal(next.done, false);
          assert.equal(envd.logs.filter((l) => l.msg === "restored after snapshot").length, restoresBefore);
        } else {
          // Wrenn's host prepares without a token, and the next /health restores, once.
          assert.equal(prepare.status, 204);
          assert.equal((await envd.fetch("/health")).status, 200);
          await eventually(() => envd.logs.some((l) => l.msg === "restored after snapshot"), "the restore");
          const after = envd.logs.filter((l) => l.msg === "restored after snapshot").length;
          // Without another prepare, a /health restores nothing.
          assert.equal((await envd.fetch("/health")).status, 200);
          assert.equal(envd.logs.filter((l) => l.msg === "restored after snapshot").length, after);
        }
        await envd.process.sendSignal({ process: { selector: { case: "pid", value: pid } }, signal: 9 }, { headers: { "x-access-token": TOKEN } });
        for (let r = await it.next().catch(() => ({ done: true })); !r.done; r = await it.next().catch(() => ({ done: true })));
      });
    });
  }
}

/** A harmless request for `method`: Filesystem paths inside `dir`, nothing for the other services. */
function probeMessage(service: string, method: string, dir: string): Record<string, string> {
  if (service !== "filesystem.Filesystem") return {};
  const probe = join(dir, "auth-probe");
  if (method === "Move") return { source: probe, destination: join(dir, "auth-probe-moved") };
  if (method === "GetWatcherEvents" || method === "RemoveWatcher") return { watcherId: "no-such-watcher" };
  return { path: probe };
}
