/**
 * The inotify limits end to end: the daemon runs in its own user namespace, where
 * /proc/sys/user/max_inotify_{watches,instances} can be lowered without touching this machine's
 * settings. Hitting either limit is resource_exhausted with a message that says which, when a
 * watch starts and when a recursive watch grows into the limit later; the daemon keeps serving.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventType } from "../../src/gen/filesystem/filesystem_pb.js";
import { type Daemon, eventually, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

const WATCH_LIMIT = 4;
const INSTANCE_LIMIT = 2;

const canUnshare = (() => {
  if (!isRoot) return false;
  try {
    execFileSync("unshare", ["--user", "--map-root-user", "sh", "-c", "echo 1 > /proc/sys/user/max_inotify_watches"], {
      stdio: "ignore",
    });
    return true;
  } catch {
    return false;
  }
})();

const WRAP = [
  "unshare",
  "--user",
  "--map-root-user",
  "sh",
  "-c",
  `echo ${WATCH_LIMIT} > /proc/sys/user/max_inotify_watches && echo ${INSTANCE_LIMIT} > /proc/sys/user/max_inotify_instances && exec "$@"`,
  "sh",
];

async function codeOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("expected an error");
}

for (const runtime of RUNTIMES) {
  describe(`inotify limits [${runtime}]`, { skip: !canUnshare && "needs root and user namespaces (unshare --user)" }, () => {
    let envd: Daemon;
    let dir: string;
    before(async () => {
      envd = await startDaemon({ runtime, wrap: WRAP });
      dir = mkdtempSync("/tmp/envd-limits-");
    });
    after(async () => {
      try {
        rmSync(dir, { recursive: true, force: true });
      } finally {
        await envd[Symbol.asyncDispose]();
      }
    });

    test("a tree with more directories than the watch limit cannot be watched recursively", async () => {
      const root = join(dir, "big");
      for (let i = 0; i < WATCH_LIMIT + 1; i++) mkdirSync(join(root, `d${i}`), { recursive: true });
      const stream = envd.filesystem.watchDir({ path: root, recursive: true });
      const err = await codeOf((async () => {
        for await (const _ of stream) assert.fail("no start event when the watch cannot be armed");
      })());
      assert.equal(Code[err.code], "ResourceExhausted");
      assert.match(err.rawMessage, new RegExp(`inotify watch limit reached \\(fs\\.inotify\\.max_user_watches=${WATCH_LIMIT}\\)`));
      const polling = await codeOf(envd.filesystem.createWatcher({ path: root, recursive: true }));
      assert.equal(Code[polling.code], "ResourceExhausted");
      // the same tree without recursion needs one watch
      const { watcherId } = await envd.filesystem.createWatcher({ path: root });
      await envd.filesystem.removeWatcher({ watcherId });
    });

    test("a recursive watch that grows past the limit ends with resource_exhausted after its events", async () => {
      const root = join(dir, "grow");
      mkdirSync(root);
      const events: string[] = [];
      let error: ConnectError | undefined;
      let started = false;
      const ctrl = new AbortController();
      const done = (async () => {
        try {
          for await (const res of envd.filesystem.watchDir({ path: root, recursive: true }, { signal: ctrl.signal })) {
            if (res.event.case === "start") started = true;
            if (res.event.case === "filesystem") events.push(`${EventType[res.event.value.type]} ${res.event.value.name}`);
          }
        } catch (err) {
          error = ConnectError.from(err);
        }
      })();
      await eventually(() => started, "start");
      for (let i = 0; i < WATCH_LIMIT + 1; i++) {
        mkdirSync(join(root, `n${i}`));
        writeFileSync(join(root, `n${i}`, "f"), "x");
      }
      await done;
      assert.equal(Code[error?.code ?? Code.Unknown], "ResourceExhausted", String(error));
      assert.match(error?.rawMessage ?? "", /watch limit/);
      assert.ok(events.includes("CREATE n0"), JSON.stringify(events));
      ctrl.abort();
    });

    test("more watches than the instance limit: resource_exhausted naming max_user_instances", async () => {
      const root = join(dir, "inst");
      mkdirSync(root);
      const ids: string[] = [];
      for (let i = 0; i < INSTANCE_LIMIT; i++) ids.push((await envd.filesystem.createWatcher({ path: root })).watcherId);
      const err = await codeOf(envd.filesystem.createWatcher({ path: root }));
      assert.equal(Code[err.code], "ResourceExhausted");
      assert.match(err.rawMessage, new RegExp(`inotify instance limit reached \\(fs\\.inotify\\.max_user_instances=${INSTANCE_LIMIT}\\)`));
      const stream = await codeOf((async () => {
        for await (const _ of envd.filesystem.watchDir({ path: root })) assert.fail("no start event");
      })());
      assert.equal(Code[stream.code], "ResourceExhausted");
      // releasing one makes room again, and the daemon still answers everything else
      await envd.filesystem.removeWatcher({ watcherId: ids.pop() as string });
      ids.push((await envd.filesystem.createWatcher({ path: root })).watcherId);
      for (const watcherId of ids) await envd.filesystem.removeWatcher({ watcherId });
      assert.ok((await envd.filesystem.stat({ path: root })).entry);
    });
  });
}
