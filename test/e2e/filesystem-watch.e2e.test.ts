/**
 * Filesystem watching end to end: streaming WatchDir and the polling watchers, every event type,
 * recursion (including directories created under the watch), includeEntry, bad input, cleanup
 * when the client leaves, bursts of 10,000 files, slow clients, and kernel queue overflow.
 */
import assert from "node:assert/strict";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir as tmpdirOf } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { EventType, FileType, type WatchDirResponse } from "../../src/gen/filesystem/filesystem_pb.js";
import { type Daemon, eventually, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

type Ev = WatchDirResponse["event"];

interface Collected {
  events: Ev[];
  error: ConnectError | undefined;
  ended: boolean;
  done: Promise<void>;
  abort(): void;
  /** Filesystem events as "TYPE name" strings. */
  fs(): string[];
}

/** Starts a WatchDir stream and collects it in the background; resolves once `start` arrived. */
async function watch(
  envd: Daemon,
  req: { path: string; recursive?: boolean; includeEntry?: boolean; allowNetworkMounts?: boolean },
  headers: Record<string, string> = {},
): Promise<Collected> {
  const ctrl = new AbortController();
  const c: Collected = {
    events: [],
    error: undefined,
    ended: false,
    done: Promise.resolve(),
    abort: () => ctrl.abort(),
    fs: () =>
      c.events.flatMap((e) => (e.case === "filesystem" ? [`${EventType[e.value.type]} ${e.value.name}`] : [])),
  };
  const stream = envd.filesystem.watchDir(req, { signal: ctrl.signal, headers, timeoutMs: 120_000 });
  c.done = (async () => {
    try {
      for await (const res of stream) c.events.push(res.event);
    } catch (err) {
      c.error = ConnectError.from(err);
    } finally {
      c.ended = true;
    }
  })();
  opened.push(c);
  await eventually(() => c.events.length > 0 || c.ended, "the start event");
  if (c.error) throw c.error;
  assert.equal(c.events[0]?.case, "start");
  return c;
}

async function rejectsWith(p: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    const e = ConnectError.from(err);
    assert.equal(Code[e.code], Code[code], e.message);
    if (message) assert.match(e.rawMessage, message);
    return true;
  });
}

/** inotify instances the daemon holds open (each watch has its own). */
function inotifyCount(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === "anon_inode:inotify") n++;
    } catch {}
  }
  return n;
}

function maxQueuedEvents(): number {
  return Number(readFileSync("/proc/sys/fs/inotify/max_queued_events", "utf8").trim());
}

const BURST = 10_000;

/** Whether a FUSE mount can really be made here (bindfs installed, /dev/fuse usable, allowed to mount). */
const hasBindfs = (() => {
  if (!isRoot) return false;
  const probe = mkdtempSync(join(tmpdirOf(), "envd-fuse-probe-"));
  const src = join(probe, "src");
  const dst = join(probe, "dst");
  mkdirSync(src);
  mkdirSync(dst);
  try {
    execFileSync("bindfs", [src, dst], { stdio: "ignore", timeout: 10_000 });
    execFileSync("umount", [dst], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
/** Streams not yet aborted by their test (a failing test must not leave watches behind). */
const opened: Collected[] = [];

for (const runtime of RUNTIMES) {
  describe(`Filesystem watching [${runtime}]`, () => {
    let envd: Daemon;
    let base: string;
    let n = 0;
    let suiteIdle = 0;
    const pollers: string[] = [];
    afterEach(async () => {
      const streams = opened.splice(0);
      for (const c of streams) c.abort();
      await Promise.all(streams.map((c) => c.done));
      for (const watcherId of pollers.splice(0)) await envd.filesystem.removeWatcher({ watcherId }).catch(() => {});
      await eventually(() => inotifyCount(envd.pid) === suiteIdle, "every watch of the test released");
    });
    const freshDir = () => {
      const d = join(base, `w${n++}`);
      mkdirSync(d);
      return d;
    };
    before(async () => {
      envd = await startDaemon({ runtime });
      base = mkdtempSync("/tmp/envd-watch-");
      suiteIdle = inotifyCount(envd.pid);
    });
    after(async () => {
      try {
        rmSync(base, { recursive: true, force: true });
      } finally {
        await envd[Symbol.asyncDispose]();
      }
    });

    test("WatchDir: start first, then every event type, named relative to the watched dir", async () => {
      const d = freshDir();
      mkdirSync(join(d, "sub"));
      const w = await watch(envd, { path: d });
      writeFileSync(join(d, "f.txt"), "data");
      chmodSync(join(d, "f.txt"), 0o600);
      renameSync(join(d, "f.txt"), join(d, "g.txt"));
      writeFileSync(join(d, "sub", "not-reported.txt"), "x"); // not recursive
      unlinkSync(join(d, "g.txt"));
      mkdirSync(join(d, "newdir"));
      const expected = [
        "CREATE f.txt",
        "WRITE f.txt",
        "CHMOD f.txt",
        "RENAME f.txt",
        "CREATE g.txt",
        "REMOVE g.txt",
        "CREATE newdir",
      ];
      await eventually(() => w.fs().length >= expected.length, "all events", 10_000).catch(() => {});
      assert.deepEqual(w.fs(), expected);
      w.abort();
      await w.done;
    });

    test("recursive WatchDir reports sub/f.txt and everything in directories created under the watch", async () => {
      const d = freshDir();
      mkdirSync(join(d, "sub"));
      const w = await watch(envd, { path: d, recursive: true });
      writeFileSync(join(d, "sub", "f.txt"), "x");
      // created in one go: the deeper levels exist before the daemon can watch them
      mkdirSync(join(d, "new", "deep", "er"), { recursive: true });
      writeFileSync(join(d, "new", "deep", "er", "leaf.txt"), "x");
      await eventually(() => w.fs().includes("CREATE new/deep/er/leaf.txt"), "the leaf in the new tree");
      // and later changes in the new tree are watched too
      writeFileSync(join(d, "new", "deep", "later.txt"), "y");
      await eventually(() => w.fs().includes("WRITE new/deep/later.txt"), "a write in the new tree");
      const evs = w.fs();
      for (const e of ["CREATE sub/f.txt", "WRITE sub/f.txt", "CREATE new", "CREATE new/deep", "CREATE new/deep/er"]) {
        assert.equal(evs.filter((x) => x === e).length, 1, `${e} once in ${JSON.stringify(evs)}`);
      }
      // a directory moved out of the tree is no longer reported under its old name
      renameSync(join(d, "new"), join(base, `moved-out-${runtime}`));
      await eventually(() => w.fs().includes("RENAME new"), "the move out");
      writeFileSync(join(base, `moved-out-${runtime}`, "deep", "after-move.txt"), "z");
      writeFileSync(join(d, "marker"), "");
      await eventually(() => w.fs().includes("CREATE marker"), "the marker");
      assert.ok(!w.fs().some((e) => e.includes("after-move")), JSON.stringify(w.fs()));
      w.abort();
      await w.done;
    });

    test("includeEntry puts EntryInfo on CREATE, WRITE and CHMOD only", async () => {
      const d = freshDir();
      const w = await watch(envd, { path: d, includeEntry: true });
      writeFileSync(join(d, "e.txt"), "12345");
      chmodSync(join(d, "e.txt"), 0o600);
      // entries are looked up when the event is read: keep the file until then
      await eventually(() => w.fs().includes("CHMOD e.txt"), "the chmod");
      unlinkSync(join(d, "e.txt"));
      await eventually(() => w.fs().includes("REMOVE e.txt"), "the remove");
      const fsEvents = w.events.flatMap((e) => (e.case === "filesystem" ? [e.value] : []));
      for (const ev of fsEvents) {
        if (ev.type === EventType.CREATE || ev.type === EventType.WRITE || ev.type === EventType.CHMOD) {
          assert.ok(ev.entry, `entry on ${EventType[ev.type]}`);
          assert.equal(ev.entry.path, join(d, "e.txt"));
          assert.equal(ev.entry.name, "e.txt");
          assert.equal(ev.entry.type, FileType.FILE);
        } else {
          assert.equal(ev.entry, undefined, `no entry on ${EventType[ev.type]}`);
        }
      }
      const chmod = fsEvents.find((e) => e.type === EventType.CHMOD);
      assert.equal(chmod?.entry?.mode, 0o600);
      // without includeEntry there is none
      const plain = await watch(envd, { path: d });
      writeFileSync(join(d, "p.txt"), "");
      await eventually(() => plain.fs().includes("CREATE p.txt"), "create");
      assert.ok(plain.events.every((e) => e.case !== "filesystem" || e.value.entry === undefined));
      w.abort();
      plain.abort();
      await Promise.all([w.done, plain.done]);
    });

    test("WatchDir bad input: missing path, a file, ~other, unknown user", async () => {
      const d = freshDir();
      writeFileSync(join(d, "file"), "");
      await rejectsWith(watch(envd, { path: join(d, "missing") }), Code.NotFound, /not found/);
      await rejectsWith(watch(envd, { path: join(d, "file") }), Code.InvalidArgument, /not a directory/);
      await rejectsWith(watch(envd, { path: join(d, "file", "x") }), Code.InvalidArgument, /not a directory/);
      await rejectsWith(watch(envd, { path: "~other/x" }), Code.InvalidArgument, /home dir/);
      await rejectsWith(
        watch(envd, { path: d }, { authorization: `Basic ${Buffer.from("no-such-user:").toString("base64")}` }),
        Code.Unauthenticated,
      );
      await rejectsWith(envd.filesystem.createWatcher({ path: join(d, "missing") }), Code.NotFound);
      await rejectsWith(envd.filesystem.createWatcher({ path: join(d, "file") }), Code.InvalidArgument);
      // the daemon is fine afterwards
      assert.ok((await envd.filesystem.stat({ path: d })).entry);
    });

    test("a FUSE mount is refused unless allowNetworkMounts is set", { skip: !hasBindfs && "needs a working FUSE mount (root, bindfs, /dev/fuse)" }, async () => {
      const src = freshDir();
      const mnt = freshDir();
      execFileSync("bindfs", [src, mnt]);
      try {
        await rejectsWith(watch(envd, { path: mnt }), Code.InvalidArgument, /cannot watch path on network filesystem/);
        await rejectsWith(watch(envd, { path: mnt, recursive: true }), Code.InvalidArgument, /network filesystem/);
        await rejectsWith(envd.filesystem.createWatcher({ path: mnt }), Code.InvalidArgument, /network filesystem/);
        const w = await watch(envd, { path: mnt, allowNetworkMounts: true });
        writeFileSync(join(mnt, "via-fuse"), "x");
        await eventually(() => w.fs().includes("CREATE via-fuse"), "an event through the mount");
        w.abort();
        await w.done;
      } finally {
        execFileSync("umount", [mnt]);
      }
    });

    test("allowNetworkMounts is accepted on a local directory", async () => {
      const d = freshDir();
      const w = await watch(envd, { path: d, allowNetworkMounts: true });
      writeFileSync(join(d, "x"), "");
      await eventually(() => w.fs().includes("CREATE x"), "create");
      w.abort();
      await w.done;
    });

    test("a streaming watch ends when the client leaves: its inotify instance is closed", async () => {
      const d = freshDir();
      const idle = inotifyCount(envd.pid);
      const a = await watch(envd, { path: d, recursive: true });
      const b = await watch(envd, { path: d });
      assert.equal(inotifyCount(envd.pid), idle + 2);
      a.abort();
      await a.done;
      await eventually(() => inotifyCount(envd.pid) === idle + 1, "one watch left");
      // the other one still works
      writeFileSync(join(d, "still"), "");
      await eventually(() => b.fs().includes("CREATE still"), "the remaining watch");
      b.abort();
      await b.done;
      await eventually(() => inotifyCount(envd.pid) === idle, "no watches after");
    });

    test("keepalives flow on a quiet watch; Connect-Timeout-Ms ends it with deadline_exceeded and releases it", async () => {
      const d = freshDir();
      const idle = inotifyCount(envd.pid);
      const w = await watch(envd, { path: d }, { "keepalive-ping-interval": "1" });
      await eventually(() => w.events.some((e) => e.case === "keepalive"), "a keepalive", 10_000);
      assert.equal(w.fs().length, 0);
      w.abort();
      await w.done;
      const events: string[] = [];
      const err = await (async () => {
        try {
          // Long enough for the start event to arrive on a loaded CI machine (300 ms was not).
          for await (const res of envd.filesystem.watchDir({ path: d }, { timeoutMs: 2_000 })) events.push(res.event.case ?? "");
        } catch (e) {
          return ConnectError.from(e);
        }
        return undefined;
      })();
      assert.equal(events[0], "start");
      assert.equal(Code[err?.code ?? Code.Unknown], "DeadlineExceeded", String(err));
      await eventually(() => inotifyCount(envd.pid) === idle, "the watch is released");
    });

    test("removing the watched directory reports REMOVE . and ends the stream", async () => {
      const d = freshDir();
      const idle = inotifyCount(envd.pid);
      const w = await watch(envd, { path: d });
      rmSync(d, { recursive: true });
      await w.done;
      assert.equal(w.error, undefined);
      assert.equal(w.fs().at(-1), "REMOVE .");
      await eventually(() => inotifyCount(envd.pid) === idle, "the watch is released");
    });

    test("polling watchers: id format, events drained once, remove, unknown ids are not_found", async () => {
      const d = freshDir();
      const idle = inotifyCount(envd.pid);
      const { watcherId } = await envd.filesystem.createWatcher({ path: d, recursive: true, includeEntry: true });
      pollers.push(watcherId);
      assert.match(watcherId, /^w[a-z0-9]{20}$/);
      mkdirSync(join(d, "s"));
      writeFileSync(join(d, "s", "f"), "1");
      const got: string[] = [];
      const withEntry: boolean[] = [];
      await eventually(async () => {
        const { events } = await envd.filesystem.getWatcherEvents({ watcherId });
        for (const e of events) {
          got.push(`${EventType[e.type]} ${e.name}`);
          withEntry.push(e.entry !== undefined);
        }
        return got.includes("WRITE s/f");
      }, "polled events").catch((err: Error) => assert.fail(`${err.message}; got ${JSON.stringify(got)}`));
      assert.deepEqual(got, ["CREATE s", "CREATE s/f", "WRITE s/f"]);
      assert.deepEqual(withEntry, [true, true, true]);
      assert.deepEqual((await envd.filesystem.getWatcherEvents({ watcherId })).events, []);
      // the binary codec polls the same watcher
      writeFileSync(join(d, "g"), "");
      await eventually(async () => (await envd.binary.filesystem.getWatcherEvents({ watcherId })).events.length > 0, "binary poll");
      await envd.filesystem.removeWatcher({ watcherId });
      await eventually(() => inotifyCount(envd.pid) === idle, "the watch is released");
      await rejectsWith(envd.filesystem.getWatcherEvents({ watcherId }), Code.NotFound, /not found/);
      await rejectsWith(envd.filesystem.removeWatcher({ watcherId }), Code.NotFound);
      await rejectsWith(envd.filesystem.getWatcherEvents({ watcherId: "wunknown" }), Code.NotFound);
      await rejectsWith(envd.filesystem.removeWatcher({ watcherId: "" }), Code.NotFound);
    });

    test(`a burst of ${BURST} new files reaches a streaming and a polling watcher completely (or ends with resource_exhausted)`, async () => {
      const d = freshDir();
      mkdirSync(join(d, "sub"));
      const stream = await watch(envd, { path: d, recursive: true });
      const { watcherId } = await envd.filesystem.createWatcher({ path: join(d, "sub") });
      pollers.push(watcherId);
      for (let i = 0; i < BURST; i++) writeFileSync(join(d, "sub", `f${i}`), "x");
      writeFileSync(join(d, "sub", "last"), "x");

      const polled = new Set<string>();
      let pollError: ConnectError | undefined;
      await eventually(
        async () => {
          try {
            const { events } = await envd.filesystem.getWatcherEvents({ watcherId });
            for (const e of events) if (e.type === EventType.CREATE) polled.add(e.name);
          } catch (err) {
            pollError = ConnectError.from(err);
          }
          return polled.has("last") || pollError;
        },
        "the polling watcher's last event",
        60_000,
      );
      await eventually(() => stream.fs().includes("CREATE sub/last") || stream.ended, "the stream's last event", 60_000);

      const streamed = new Set(stream.fs().filter((e) => e.startsWith("CREATE sub/f")).map((e) => e.slice("CREATE sub/".length)));
      const missing = (s: Set<string>) => Array.from({ length: BURST }, (_, i) => `f${i}`).filter((f) => !s.has(f));
      // Every event arrives, or the watch says it lost some: never a silent gap.
      if (stream.error) assert.equal(Code[stream.error.code], "ResourceExhausted", stream.error.message);
      else assert.deepEqual(missing(streamed), [], "streaming watcher lost events silently");
      if (pollError) assert.equal(Code[pollError.code], "ResourceExhausted", pollError.message);
      else assert.deepEqual(missing(polled), [], "polling watcher lost events silently");
      // On this machine neither overflows; say so if one ever does.
      if (stream.error || pollError) console.log(`[${runtime}] burst ended with: ${stream.error?.message ?? pollError?.message}`);
      stream.abort();
      await stream.done;
      await envd.filesystem.removeWatcher({ watcherId });
    });

    test("a client that stops reading does not hold back another watcher of the same directory", async () => {
      const d = freshDir();
      const idle = inotifyCount(envd.pid);
      // A raw stream whose body is never read: the server's writes back up behind it.
      const ctrl = new AbortController();
      const body = new Uint8Array(5 + Buffer.byteLength(JSON.stringify({ path: d, includeEntry: true })));
      const json = Buffer.from(JSON.stringify({ path: d, includeEntry: true }));
      new DataView(body.buffer).setUint32(1, json.length);
      body.set(json, 5);
      const stalled = await envd.fetch("/filesystem.Filesystem/WatchDir", {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body,
        signal: ctrl.signal,
      });
      assert.equal(stalled.status, 200);
      const active = await watch(envd, { path: d });
      for (let i = 0; i < BURST; i++) writeFileSync(join(d, `s${i}`), "x");
      writeFileSync(join(d, "done"), "");
      await eventually(() => active.fs().includes("CREATE done") || active.ended, "the active watcher's last event", 60_000);
      assert.equal(active.error, undefined);
      assert.equal(active.fs().filter((e) => e.startsWith("CREATE s")).length, BURST);
      ctrl.abort();
      active.abort();
      await active.done;
      await eventually(() => inotifyCount(envd.pid) === idle, "both watches released", 30_000);
    });

    test("kernel queue overflow ends the stream and the polling watcher with resource_exhausted", async () => {
      const d = freshDir();
      const idle = inotifyCount(envd.pid);
      const stream = await watch(envd, { path: d });
      const { watcherId } = await envd.filesystem.createWatcher({ path: d });
      pollers.push(watcherId);
      // Freeze the daemon (its watch thread too) so the kernel queue fills past its limit.
      const files = Math.ceil(maxQueuedEvents() / 2) + 2_000;
      process.kill(envd.pid, "SIGSTOP");
      try {
        for (let i = 0; i < files; i++) writeFileSync(join(d, `o${i}`), "x");
      } finally {
        process.kill(envd.pid, "SIGCONT");
      }
      await stream.done;
      assert.equal(Code[stream.error?.code ?? Code.Unknown], "ResourceExhausted", String(stream.error));
      assert.match(stream.error?.rawMessage ?? "", /max_queued_events=\d+\) overflowed/);
      // the events before the overflow were delivered
      assert.ok(stream.fs().length > 0);
      let polled = 0;
      const err = await eventually(async () => {
        try {
          polled += (await envd.filesystem.getWatcherEvents({ watcherId })).events.length;
          return undefined;
        } catch (e) {
          return ConnectError.from(e);
        }
      }, "the polling watcher's error");
      assert.equal(Code[err.code], "ResourceExhausted");
      assert.ok(polled > 0);
      // it keeps saying so until removed
      await rejectsWith(envd.filesystem.getWatcherEvents({ watcherId }), Code.ResourceExhausted);
      await envd.filesystem.removeWatcher({ watcherId });
      await eventually(() => inotifyCount(envd.pid) === idle, "watches released");
    });
  });
}
