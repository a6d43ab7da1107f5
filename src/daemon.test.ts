/**
 * A start that fails half-way leaves nothing behind. Runs the real createDaemon in this process
 * (Node's async_hooks see every timer, socket, child and worker it creates) with the port already
 * taken, so listen() fails after every subsystem was built and started.
 */
import assert from "node:assert/strict";
import { createHook } from "node:async_hooks";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseConfig } from "./config.ts";
import { createDaemon } from "./daemon.ts";
import { createLogger } from "./log.ts";

/** Resource types that would keep working (or keep the process alive) after a failed start. */
const WATCHED = new Set(["Timeout", "TCPSERVERWRAP", "TCPWRAP", "PROCESSWRAP", "PIPEWRAP", "WORKER", "FSEVENTWRAP", "UDPWRAP", "SIGNALWRAP"]);

const dir = mkdtempSync(join(tmpdir(), "envd-daemon-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a start that fails at listen (port taken) leaves no timer, socket, child or worker behind", async () => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
  const port = (busy.address() as AddressInfo).port;
  writeFileSync(join(dir, "hosts"), "127.0.0.1 localhost\n");
  writeFileSync(join(dir, "ca.crt"), "");
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    ENVD_CLOCK_COMMAND: "true",
    ENVD_CHRONYC_COMMAND: "true",
    ENVD_RUN_DIR: join(dir, "run"),
    ENVD_HOSTS_FILE: join(dir, "hosts"),
    ENVD_CA_BUNDLE: join(dir, "ca.crt"),
    ENVD_CA_CERT: join(dir, "envd-ca.crt"),
    ENVD_MEMINFO_PATH: "/proc/meminfo",
    ENVD_DROP_CACHES_PATH: join(dir, "drop_caches"),
  };
  const parsed = parseConfig(["--port", String(port), "--host", "127.0.0.1", "--isnotfc", "--no-cgroups"], env);
  assert.equal(parsed.kind, "run");
  if (parsed.kind !== "run") return;

  const live = new Map<number, string>();
  const created = new Set<string>();
  const hook = createHook({
    init(id, type) {
      if (!WATCHED.has(type)) return;
      live.set(id, type);
      created.add(type);
    },
    destroy(id) {
      live.delete(id);
    },
  });
  /** A pause whose own timer the hook does not count. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      hook.disable();
      setTimeout(resolve, ms);
      hook.enable();
    });

  hook.enable();
  try {
    await assert.rejects(createDaemon(parsed.config, createLogger("error", () => {}), env), { code: "EADDRINUSE" });
    // The start got far enough to run timers (samplers, trimmer, port scan) and open the listener.
    assert.ok(created.has("Timeout") && created.has("TCPSERVERWRAP"), `seen: ${[...created].join(", ")}`);
    const deadline = Date.now() + 10_000;
    while (live.size > 0 && Date.now() < deadline) await pause(20);
    assert.deepEqual([...live.values()], [], "resources the failed start left behind");
  } finally {
    hook.disable();
    busy.close();
  }
});
