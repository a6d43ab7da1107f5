/**
 * The Filesystem service at its seam: real Connect (createRouterTransport, no sockets, with the
 * daemon's error interceptor) in front of fake users and a fake WatchEngine, over files in this
 * test's own temporary directory (the fake users' home, so "" and relative paths land there too,
 * never in a real home). Covers validation, the errno → code mapping as a client sees it, message
 * shapes, and the shape of the WatchDir stream and of the polling watchers.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { EnvdError } from "../errors.ts";
import { OP_CHMOD, OP_CREATE, OP_REMOVE, OP_WRITE } from "../fs/inotify.ts";
import type { WatchEngine, WatchHandle, WatchSink } from "../fs/watch-engine.ts";
import { WatcherRegistry } from "../fs/watcher-registry.ts";
import { EventType, FileType, Filesystem } from "../gen/filesystem/filesystem_pb.js";
import { Session } from "../session.ts";
import type { User, UserDb } from "../users/user-db.ts";
import { errorInterceptor } from "./error-interceptor.ts";
import { createFilesystemService } from "./filesystem-service.ts";

const scratch = mkdtempSync(join(tmpdir(), "envd-fs-service-"));
after(() => {
  chmodSync(join(scratch, "locked"), 0o755);
  rmSync(scratch, { recursive: true, force: true });
});
const home = join(scratch, "home");
mkdirSync(home);
// A directory nobody but root may enter (and root only with its privileges: see asUnprivileged).
mkdirSync(join(scratch, "locked", "inner"), { recursive: true });
chmodSync(join(scratch, "locked"), 0o000);

const isRoot = process.getuid?.() === 0;
/** Runs `fn` as a user that cannot enter `locked` (as root: euid nobody for the call, then back). */
async function asUnprivileged<T>(fn: () => Promise<T>): Promise<T> {
  if (!isRoot) return fn();
  process.seteuid?.(65534);
  try {
    return await fn();
  } finally {
    process.seteuid?.(0);
  }
}

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;
const me: User = { name: "tester", uid, gid, home, shell: "/bin/sh", groups: [] };
const users = {
  lookup: (name: string) => (name === "root" || name === "tester" ? { ...me, name } : undefined),
  userName: (id: number) => (id === uid ? "tester" : String(id)),
  groupName: (id: number) => (id === gid ? "testers" : String(id)),
} as unknown as UserDb;

interface WatchCall {
  root: string;
  recursive: boolean;
  exclude: readonly string[];
  sink: WatchSink;
  closed: boolean;
}

/** Records each watch and hands its sink to the test, which plays the kernel. */
class FakeEngine {
  readonly calls: WatchCall[] = [];
  fail: unknown;
  async watch(root: string, recursive: boolean, sink: WatchSink, exclude: readonly string[] = []): Promise<WatchHandle> {
    if (this.fail !== undefined) throw this.fail;
    const call: WatchCall = { root, recursive, exclude, sink, closed: false };
    this.calls.push(call);
    return {
      watches: 1,
      close: () => {
        call.closed = true;
      },
    };
  }
}

function fixture(opts: { maxWatchers?: number; maxResponseBytes?: number } = {}) {
  const engine = new FakeEngine();
  const watchers = new WatcherRegistry({ maxWatchers: opts.maxWatchers ?? 4 });
  const session = new Session();
  const transport = createRouterTransport(
    (router) => {
      router.service(
        Filesystem,
        createFilesystemService({
          users,
          session,
          watches: engine as unknown as WatchEngine,
          watchers,
          ...(opts.maxResponseBytes !== undefined ? { maxResponseBytes: opts.maxResponseBytes } : {}),
        }),
      );
    },
    { router: { interceptors: [errorInterceptor()] } },
  );
  return { client: createClient(Filesystem, transport), engine, watchers, session, [Symbol.dispose]: () => watchers[Symbol.dispose]() };
}

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("expected an error");
}

/** Polls `check` until it is true (deadline 5 s). */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const basic = (name: string) => ({ authorization: `Basic ${Buffer.from(`${name}:`).toString("base64")}` });

describe("Filesystem service through createRouterTransport", () => {
  test("Stat answers the full EntryInfo; connect-python gets the legacy shape and the header", async () => {
    using f = fixture();
    const file = join(home, "stat.txt");
    writeFileSync(file, "12345");
    chmodSync(file, 0o640);
    const { entry } = await f.client.stat({ path: file });
    assert.equal(entry?.name, "stat.txt");
    assert.equal(entry?.type, FileType.FILE);
    assert.equal(entry?.path, file);
    assert.equal(entry?.size, 5n);
    assert.equal((entry?.mode ?? 0) & 0o777, 0o640);
    assert.equal(entry?.permissions, "-rw-r-----");
    assert.equal(entry?.owner, "tester");
    assert.equal(entry?.group, "testers");
    assert.ok((entry?.modifiedTime?.seconds ?? 0n) > 0n);

    let legacyHeader: string | null = null;
    const legacy = await f.client.stat(
      { path: file },
      {
        headers: { "user-agent": "connect-python" },
        onHeader: (h) => {
          legacyHeader = h.get("x-e2b-legacy-sdk");
        },
      },
    );
    assert.equal(legacy.entry?.name, "stat.txt");
    assert.equal(legacy.entry?.size, 0n, "no size in the legacy shape");
    assert.equal(legacy.entry?.owner, "");
    assert.equal(legacyHeader, "true");
  });

  test("relative paths, '' and ~ resolve against the requesting user's home; ~name and NUL are invalid_argument", async () => {
    using f = fixture();
    writeFileSync(join(home, "rel.txt"), "");
    assert.equal((await f.client.stat({ path: "rel.txt" })).entry?.path, join(home, "rel.txt"));
    assert.equal((await f.client.stat({ path: "~/rel.txt" }, { headers: basic("tester") })).entry?.path, join(home, "rel.txt"));
    assert.equal((await f.client.stat({ path: "" })).entry?.path, home);
    f.session.defaultWorkdir = join(home, "rel.txt");
    assert.equal((await f.client.stat({ path: "" })).entry?.path, join(home, "rel.txt"), "'' is the default workdir once set");
    const tilde = await errorOf(f.client.stat({ path: "~bob/x" }));
    assert.equal(tilde.code, Code.InvalidArgument);
    assert.equal(tilde.rawMessage, "cannot expand user-specific home dir: ~bob/x");
    assert.equal((await errorOf(f.client.stat({ path: "a\0b" }))).code, Code.InvalidArgument);
  });

  test("an unknown Basic-auth user is unauthenticated with E2B's message, for every RPC that takes a path", async () => {
    using f = fixture();
    const h = { headers: basic("ghost") };
    for (const call of [
      f.client.stat({ path: home }, h),
      f.client.listDir({ path: home }, h),
      f.client.makeDir({ path: "x" }, h),
      f.client.remove({ path: "x" }, h),
      f.client.move({ source: "a", destination: "b" }, h),
      f.client.createWatcher({ path: home }, h),
    ]) {
      const err = await errorOf(call);
      assert.equal(err.code, Code.Unauthenticated);
      assert.equal(err.rawMessage, "invalid username: 'ghost'");
    }
    assert.equal(f.engine.calls.length, 0);
  });

  test("errno becomes the code a client sees: not_found, invalid_argument, failed_precondition, permission_denied", async () => {
    using f = fixture();
    writeFileSync(join(home, "plain.txt"), "x");
    mkdirSync(join(home, "full", "sub"), { recursive: true });
    mkdirSync(join(home, "empty"), { recursive: true });
    symlinkSync("loop-b", join(home, "loop-a"));
    symlinkSync("loop-a", join(home, "loop-b"));
    const cases: [string, () => Promise<unknown>, Code][] = [
      ["Stat of a missing path", () => f.client.stat({ path: join(home, "missing") }), Code.NotFound],
      ["ListDir of a missing path", () => f.client.listDir({ path: join(home, "missing") }), Code.NotFound],
      ["ListDir of a file", () => f.client.listDir({ path: join(home, "plain.txt") }), Code.InvalidArgument],
      ["ListDir deeper than 256", () => f.client.listDir({ path: home, depth: 257 }), Code.InvalidArgument],
      ["ListDir through a symlink loop", () => f.client.listDir({ path: join(home, "loop-a") }), Code.FailedPrecondition],
      ["Move of a missing source", () => f.client.move({ source: join(home, "missing"), destination: join(home, "d") }), Code.NotFound],
      ["Move onto a directory that is not empty", () => f.client.move({ source: join(home, "empty"), destination: join(home, "full") }), Code.FailedPrecondition],
      ["Move of a file onto a directory", () => f.client.move({ source: join(home, "plain.txt"), destination: join(home, "full") }), Code.InvalidArgument],
      ["MakeDir under a file", () => f.client.makeDir({ path: join(home, "plain.txt", "sub") }), Code.InvalidArgument],
    ];
    for (const [what, call, code] of cases) {
      const err = await errorOf(call());
      assert.equal(Code[err.code], Code[code], `${what}: ${err.rawMessage}`);
    }
    const denied = await asUnprivileged(() => errorOf(f.client.stat({ path: join(scratch, "locked", "inner") })));
    assert.equal(denied.code, Code.PermissionDenied, denied.rawMessage);
    const deniedList = await asUnprivileged(() => errorOf(f.client.listDir({ path: join(scratch, "locked", "inner") })));
    assert.equal(deniedList.code, Code.PermissionDenied, deniedList.rawMessage);
  });

  test("Remove of a missing path succeeds; MakeDir, Move and ListDir answer the entries they made", async () => {
    using f = fixture();
    await f.client.remove({ path: join(home, "never-there") });
    const made = await f.client.makeDir({ path: "made/deep" });
    assert.equal(made.entry?.path, join(home, "made", "deep"));
    assert.equal(made.entry?.type, FileType.DIRECTORY);
    writeFileSync(join(home, "made", "deep", "f.txt"), "abc");
    const moved = await f.client.move({ source: "made/deep/f.txt", destination: "moved/here/g.txt" });
    assert.equal(moved.entry?.path, join(home, "moved", "here", "g.txt"));
    assert.equal(moved.entry?.size, 3n);
    const listed = await f.client.listDir({ path: "moved", depth: 2 });
    assert.deepEqual(
      listed.entries.map((e) => [e.path, e.type]),
      [
        [join(home, "moved", "here"), FileType.DIRECTORY],
        [join(home, "moved", "here", "g.txt"), FileType.FILE],
      ],
    );
    await f.client.remove({ path: "moved" });
    assert.equal((await errorOf(f.client.stat({ path: "moved" }))).code, Code.NotFound);
  });

  test("a ListDir answer over the message cap is resource_exhausted, not a truncated list", async () => {
    using f = fixture({ maxResponseBytes: 2_000 });
    mkdirSync(join(home, "many"));
    for (let i = 0; i < 40; i++) writeFileSync(join(home, "many", `file-${i}.txt`), "");
    const err = await errorOf(f.client.listDir({ path: join(home, "many") }));
    assert.equal(err.code, Code.ResourceExhausted, err.rawMessage);
  });

  test("WatchDir refuses before any watch starts: a bad exclude glob, a missing path, a file, an unreadable path", async () => {
    using f = fixture();
    writeFileSync(join(home, "w-file"), "");
    const first = async (req: Parameters<typeof f.client.watchDir>[0]) => {
      for await (const res of f.client.watchDir(req)) return res;
      return undefined;
    };
    const glob = await errorOf(first({ path: home, exclude: ["[unclosed"] }));
    assert.equal(glob.code, Code.InvalidArgument);
    const missing = await errorOf(first({ path: join(home, "nope") }));
    assert.equal(missing.code, Code.NotFound);
    assert.equal(missing.rawMessage, `path ${join(home, "nope")} not found`);
    assert.equal((await errorOf(first({ path: join(home, "w-file") }))).code, Code.InvalidArgument);
    assert.equal((await errorOf(first({ path: join(home, "w-file", "below") }))).code, Code.InvalidArgument, "ENOTDIR");
    const denied = await asUnprivileged(() => errorOf(first({ path: join(scratch, "locked", "inner") })));
    assert.equal(denied.code, Code.PermissionDenied, denied.rawMessage);
    assert.equal(f.engine.calls.length, 0, "the engine was never asked");
  });

  test("a domain error keeps its code and message; anything else is internal with a generic message", async () => {
    using f = fixture();
    f.engine.fail = new EnvdError(Code.ResourceExhausted, "inotify watch limit reached (test)");
    const limit = await errorOf(f.client.createWatcher({ path: home }));
    assert.equal(limit.code, Code.ResourceExhausted);
    assert.equal(limit.rawMessage, "inotify watch limit reached (test)");
    f.engine.fail = new TypeError("a bug with a secret inside");
    const bug = await errorOf(f.client.createWatcher({ path: home }));
    assert.equal(bug.code, Code.Internal);
    assert.equal(bug.rawMessage, "internal error");
  });

  test("WatchDir streams start, then one event per operation in E2B's order, and ends when the directory goes", async () => {
    using f = fixture();
    mkdirSync(join(home, "watched"));
    writeFileSync(join(home, "watched", "a.txt"), "hello");
    const it = f.client.watchDir({ path: "watched", recursive: true, includeEntry: true, exclude: ["*.log"] })[Symbol.asyncIterator]();
    const start = await it.next();
    assert.equal(start.value?.event.case, "start", "the first message says the watch is armed");
    assert.equal(f.engine.calls.length, 1);
    const call = f.engine.calls[0] as WatchCall;
    assert.deepEqual([call.root, call.recursive, call.exclude], [join(home, "watched"), true, ["*.log"]]);

    call.sink.onEvents([
      ["a.txt", OP_WRITE | OP_CREATE],
      ["gone.txt", OP_REMOVE | OP_CHMOD],
    ]);
    const got: [string, EventType, bigint | undefined][] = [];
    for (let i = 0; i < 4; i++) {
      const r = await it.next();
      assert.equal(r.value?.event.case, "filesystem");
      if (r.value?.event.case === "filesystem") got.push([r.value.event.value.name, r.value.event.value.type, r.value.event.value.entry?.size]);
    }
    assert.deepEqual(got, [
      ["a.txt", EventType.CREATE, 5n],
      ["a.txt", EventType.WRITE, 5n],
      ["gone.txt", EventType.CHMOD, undefined],
      ["gone.txt", EventType.REMOVE, undefined],
    ]);
    call.sink.onEnd({ kind: "gone" });
    assert.equal((await it.next()).done, true, "a directory that went away ends the stream without an error");
  });

  test("WatchDir: an error ends the stream after the events before it; a client that leaves closes the watch", async () => {
    using f = fixture();
    const it = f.client.watchDir({ path: home })[Symbol.asyncIterator]();
    await it.next();
    const call = f.engine.calls[0] as WatchCall;
    call.sink.onEvents([["x", OP_CREATE]]);
    call.sink.onEnd({ kind: "error", error: new EnvdError(Code.ResourceExhausted, "the kernel event queue overflowed (test)") });
    const ev = await it.next();
    assert.equal(ev.value?.event.case === "filesystem" && ev.value.event.value.name, "x");
    const err = await errorOf(it.next());
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.rawMessage, "the kernel event queue overflowed (test)");

    const ctl = new AbortController();
    const it2 = f.client.watchDir({ path: home }, { signal: ctl.signal })[Symbol.asyncIterator]();
    await it2.next();
    const second = f.engine.calls[1] as WatchCall;
    assert.equal(second.closed, false);
    const pending = it2.next().catch(() => undefined);
    ctl.abort();
    await pending;
    await until(() => second.closed, "the watch to be closed after the client left");
  });

  test("WatchDir sends a keepalive when nothing happens for the client's Keepalive-Ping-Interval", async () => {
    using f = fixture();
    const ctl = new AbortController();
    const it = f.client
      .watchDir({ path: home }, { signal: ctl.signal, headers: { "keepalive-ping-interval": "1" } })
      [Symbol.asyncIterator]();
    assert.equal((await it.next()).value?.event.case, "start");
    assert.equal((await it.next()).value?.event.case, "keepalive");
    ctl.abort();
    await it.next().catch(() => undefined);
  });

  test("polling watchers: an id like E2B's, events drained per poll, removal closes the watch, unknown ids not_found, capacity", async () => {
    using f = fixture({ maxWatchers: 1 });
    const { watcherId } = await f.client.createWatcher({ path: home });
    assert.match(watcherId, /^w[a-z0-9]{20}$/);
    const call = f.engine.calls[0] as WatchCall;
    assert.deepEqual((await f.client.getWatcherEvents({ watcherId })).events, []);
    call.sink.onEvents([["n.txt", OP_CREATE]]);
    let events: { name: string; type: EventType }[] = [];
    const deadline = Date.now() + 5_000;
    while (events.length === 0 && Date.now() < deadline) events = (await f.client.getWatcherEvents({ watcherId })).events;
    assert.deepEqual(
      events.map((e) => [e.name, e.type]),
      [["n.txt", EventType.CREATE]],
    );
    assert.deepEqual((await f.client.getWatcherEvents({ watcherId })).events, [], "drained");

    const full = await errorOf(f.client.createWatcher({ path: home }));
    assert.equal(full.code, Code.ResourceExhausted);
    assert.equal(f.engine.calls.length, 1, "a full registry refuses before any watch starts");

    await f.client.removeWatcher({ watcherId });
    assert.equal(call.closed, true);
    assert.equal((await errorOf(f.client.getWatcherEvents({ watcherId }))).code, Code.NotFound);
    assert.equal((await errorOf(f.client.removeWatcher({ watcherId }))).code, Code.NotFound);
  });
});
