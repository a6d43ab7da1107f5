/**
 * The compiled binary (`npm run build`, what ships) end to end: what only breaks once bundled.
 * The watch thread is a second entry point of the bundle, metadata goes through libc FFI (no
 * addon to unpack), every subsystem that loads on first use answers its first request, and the
 * binary does not read `.env` or `bunfig.toml` from its working directory.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { EventType } from "../../src/gen/filesystem/filesystem_pb.js";
import { type Daemon, eventually, http2Status, ROOT, startDaemon } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "envd-binary-"));
const binary = join(work, "envd");

describe("compiled binary", () => {
  let envd: Daemon;
  before(async () => {
    const r = spawnSync("bash", [join(ROOT, "scripts", "build.sh")], {
      cwd: ROOT,
      env: { ...process.env, ENVD_OUT: binary, ENVD_COMMIT: "e2e-test" },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, `npm run build failed: ${r.stderr}`);
    // A .env in the working directory must not reach the daemon's environment: this one would
    // make it refuse to start (an unknown flavor), and show in a child that inherited it.
    writeFileSync(join(work, ".env"), "ENVD_FLAVOR=not-a-flavor\nENVD_TEST_DOTENV=leaked\n");
    envd = await startDaemon({ runtime: "bun", executable: binary, cwd: work });
  });
  after(async () => {
    await envd?.[Symbol.asyncDispose]();
    rmSync(work, { recursive: true, force: true });
  });

  test("is stamped and lists only glibc as what it needs", () => {
    assert.equal(spawnSync(binary, ["-commit"], { encoding: "utf8" }).stdout, "e2e-test\n");
    const needed = spawnSync("cut", ["-f1", `${binary}.needed`], { encoding: "utf8" }).stdout.trim().split("\n");
    for (const lib of needed) assert.match(lib, /^(ld-linux[\w.-]*|libc|libm|libdl|libpthread)\.so\.\d+$/, `needs ${lib}`);
    assert.ok(statSync(binary).size > 0);
  });

  test("the first Process RPC answers (and the daemon did not read .env)", async () => {
    const out: string[] = [];
    for await (const res of envd.process.start({ process: { cmd: "/bin/sh", args: ["-c", "echo ${ENVD_TEST_DOTENV:-unset}"] } })) {
      if (res.event?.event.case === "data" && res.event.event.value.output.case === "stdout") {
        out.push(Buffer.from(res.event.event.value.output.value).toString());
      }
    }
    assert.equal(out.join(""), "unset\n");
  });

  test("the first Filesystem RPC answers, with metadata read through libc", async () => {
    const f = join(work, "meta");
    const up = await envd.fetch(`/files?path=${encodeURIComponent(f)}&username=root`, {
      method: "POST",
      headers: { "x-metadata-team": "infra" },
      body: (() => {
        const form = new FormData();
        form.append("file", new Blob(["hello"]), "meta");
        return form;
      })(),
    });
    assert.equal(up.status, 200, await up.clone().text());
    const info = await envd.filesystem.stat({ path: f });
    assert.deepEqual(info.entry?.metadata, { team: "infra" });
    const down = await envd.fetch(`/files?path=${encodeURIComponent(f)}&username=root`);
    assert.equal(await down.text(), "hello");
  });

  test("a watch starts its thread and delivers events", async () => {
    const dir = mkdtempSync(join(work, "watched-"));
    const ctrl = new AbortController();
    const names: string[] = [];
    const stream = envd.filesystem.watchDir({ path: dir }, { signal: ctrl.signal });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.value?.event.case, "start");
    writeFileSync(join(dir, "new"), "x");
    await eventually(async () => {
      const r = await it.next();
      if (r.value?.event.case === "filesystem" && r.value.event.value.type === EventType.CREATE) names.push(r.value.event.value.name);
      return names.includes("new");
    }, "a CREATE event for the new file");
    ctrl.abort();
  });

  test("HTTP/2 with prior knowledge answers on the same port", async () => {
    assert.equal(await http2Status(envd.url, "/health"), 204);
  });
});
