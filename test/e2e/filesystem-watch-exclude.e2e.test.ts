/**
 * Watch excludes (WatchDirRequest / CreateWatcherRequest field 100 `exclude`, our addition):
 * excluded subtrees produce no events and hold no inotify watch. The watches are counted from
 * the kernel's side: /proc/<daemon>/fdinfo/<fd> of each inotify instance lists one `inotify wd:`
 * line per watch.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventType, type WatchDirResponse } from "../../src/gen/filesystem/filesystem_pb.js";
import { eventually, RUNTIMES, startDaemon } from "./harness.ts";

/** Kernel watches held by the daemon, per inotify instance. */
function inotifyWatches(pid: number): number[] {
  const out: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== "anon_inode:inotify") continue;
      out.push(readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8").split("\n").filter((l) => l.startsWith("inotify wd:")).length);
    } catch {}
  }
  return out.sort((a, b) => a - b);
}

/** A repository-like tree: 3 directories of our own (root, src, src/lib), 61 in node_modules, 21 in .git. */
function repo(): string {
  const root = mkdtempSync("/tmp/envd-exclude-");
  mkdirSync(join(root, "src/lib"), { recursive: true });
  writeFileSync(join(root, "src/lib/a.ts"), "a");
  for (let i = 0; i < 30; i++) mkdirSync(join(root, `node_modules/pkg${i}/dist`), { recursive: true });
  for (let i = 0; i < 19; i++) mkdirSync(join(root, `.git/objects/${i.toString(16).padStart(2, "0")}`), { recursive: true });
  return root;
}

function collect(stream: AsyncIterable<WatchDirResponse>) {
  const events: { name: string; type: EventType }[] = [];
  let started = false;
  const done = (async () => {
    for await (const m of stream) {
      if (m.event.case === "start") started = true;
      if (m.event.case === "filesystem") events.push({ name: m.event.value.name, type: m.event.value.type });
    }
  })().catch((err: unknown) => err);
  return { events, done, started: () => started };
}

for (const runtime of RUNTIMES) {
  describe(`watch excludes [${runtime}]`, () => {
    test("WatchDir with node_modules and .git excluded: no inotify watch beneath them, no events from them, also for directories made later", async () => {
      await using envd = await startDaemon({ runtime });
      const root = repo();
      try {
        for (const fs of [envd.filesystem, envd.binary.filesystem]) {
          const idle = inotifyWatches(envd.pid);
          // Without excludes, for comparison: every directory is watched (3 + 61 + 21).
          const all = new AbortController();
          const full = collect(fs.watchDir({ path: root, recursive: true }, { signal: all.signal }));
          await eventually(() => full.started(), "the full watch");
          assert.deepEqual(inotifyWatches(envd.pid), [...idle, 85].sort((a, b) => a - b));
          all.abort();
          await full.done;
          await eventually(() => inotifyWatches(envd.pid).length === idle.length, "the full watch released");

          const ctl = new AbortController();
          const w = collect(fs.watchDir({ path: root, recursive: true, exclude: ["node_modules", ".git"] }, { signal: ctl.signal }));
          await eventually(() => w.started(), "the watch");
          assert.deepEqual(inotifyWatches(envd.pid), [...idle, 3].sort((a, b) => a - b), "root, src, src/lib");

          writeFileSync(join(root, "node_modules/pkg1/dist/index.js"), "x");
          writeFileSync(join(root, ".git/HEAD"), "ref");
          mkdirSync(join(root, "node_modules/late/deep"), { recursive: true });
          mkdirSync(join(root, "src/node_modules/nested"), { recursive: true });
          writeFileSync(join(root, "src/node_modules/nested/x"), "x");
          mkdirSync(join(root, "src/new"));
          writeFileSync(join(root, "src/new/b.ts"), "b");
          await eventually(() => w.events.some((e) => e.name === "src/new/b.ts" && e.type === EventType.WRITE), "the event outside the excludes");
          assert.deepEqual(
            w.events.filter((e) => /node_modules|\.git/.test(e.name)),
            [],
            "nothing from the excluded subtrees",
          );
          assert.deepEqual(inotifyWatches(envd.pid), [...idle, 4].sort((a, b) => a - b), "src/new watched; src/node_modules and node_modules/late not");
          rmSync(join(root, "src/new"), { recursive: true });
          rmSync(join(root, "src/node_modules"), { recursive: true });
          rmSync(join(root, "node_modules/late"), { recursive: true });
          // Cleaned up (and its events read) before the client leaves: under Bun a stream whose
          // client left is not released when an event is written after that (a separate daemon
          // issue, reported; not about excludes).
          await eventually(() => w.events.some((e) => e.name === "src/new" && e.type === EventType.REMOVE), "the removal seen");
          ctl.abort();
          await w.done;
          await eventually(() => inotifyWatches(envd.pid).length === idle.length, "released").catch((err: Error) => {
            throw new Error(`${err.message}: ${JSON.stringify(inotifyWatches(envd.pid))} vs ${JSON.stringify(idle)}`);
          });
        }
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    test("CreateWatcher with a name glob and a path glob; GetWatcherEvents returns only what is not excluded", async () => {
      await using envd = await startDaemon({ runtime });
      const root = repo();
      try {
        mkdirSync(join(root, "build/out"), { recursive: true });
        mkdirSync(join(root, "build/other"));
        const idle = inotifyWatches(envd.pid);
        const { watcherId } = await envd.filesystem.createWatcher({ path: root, recursive: true, exclude: ["*.log", "/build/out", "node_modules", ".git"] });
        assert.deepEqual(inotifyWatches(envd.pid), [...idle, 5].sort((a, b) => a - b), "root, src, src/lib, build, build/other");
        writeFileSync(join(root, "debug.log"), "x");
        writeFileSync(join(root, "src/lib/trace.log"), "x");
        writeFileSync(join(root, "build/out/bundle.js"), "x");
        writeFileSync(join(root, "build/other/kept.js"), "x");
        const seen: string[] = [];
        await eventually(async () => {
          for (const e of (await envd.filesystem.getWatcherEvents({ watcherId })).events) seen.push(e.name);
          return seen.includes("build/other/kept.js");
        }, "the kept file");
        assert.deepEqual([...new Set(seen)], ["build/other/kept.js"]);
        await envd.filesystem.removeWatcher({ watcherId });
        await eventually(() => inotifyWatches(envd.pid).length === idle.length, "released");
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    test("a non-recursive watch filters its direct children by the globs", async () => {
      await using envd = await startDaemon({ runtime });
      const root = mkdtempSync("/tmp/envd-exclude-");
      try {
        const ctl = new AbortController();
        const w = collect(envd.filesystem.watchDir({ path: root, exclude: ["*.tmp"] }, { signal: ctl.signal }));
        await eventually(() => w.started(), "the watch");
        writeFileSync(join(root, "x.tmp"), "x");
        writeFileSync(join(root, "y.txt"), "y");
        await eventually(() => w.events.some((e) => e.name === "y.txt"), "y.txt");
        assert.deepEqual(w.events.filter((e) => e.name === "x.tmp"), []);
        ctl.abort();
        await w.done;
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    test("bad patterns are invalid_argument and no watch is left", async () => {
      await using envd = await startDaemon({ runtime });
      const root = mkdtempSync("/tmp/envd-exclude-");
      try {
        const idle = inotifyWatches(envd.pid);
        const invalid = (err: unknown) => err instanceof ConnectError && err.code === Code.InvalidArgument;
        for (const exclude of [[""], ["[abc"], Array.from({ length: 257 }, (_, i) => `p${i}`)]) {
          await assert.rejects(envd.filesystem.createWatcher({ path: root, exclude }), invalid, JSON.stringify(exclude).slice(0, 30));
          await assert.rejects(
            (async () => {
              for await (const _ of envd.filesystem.watchDir({ path: root, exclude })) {
                // nothing
              }
            })(),
            invalid,
          );
        }
        assert.deepEqual(inotifyWatches(envd.pid), idle);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });
  });
}
