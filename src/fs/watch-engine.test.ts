/**
 * WatchEngine, the core of watching, with real inotify in this test's own temporary directory:
 * watch and close, recursion (including directories that appear later), excludes, the mapping of
 * file operations to event bits, the end when the directory goes, start errors, and disposal.
 * `engine.sync()` (every event the kernel queued so far has reached the sink) synchronises; no sleeps.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Code } from "../errors.ts";
import { createLogger } from "../log.ts";
import { loadLibc } from "../sys/libc.ts";
import { OP_CHMOD, OP_CREATE, OP_REMOVE, OP_RENAME, OP_WRITE } from "./inotify.ts";
import { type WatchEnd, WatchEngine, type WatchSink } from "./watch-engine.ts";

const quiet = createLogger("error", () => {});
const scratch = mkdtempSync(join(tmpdir(), "envd-watch-engine-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const freshDir = () => {
  const d = join(scratch, `w${n++}`);
  mkdirSync(d);
  return d;
};

class Recorder implements WatchSink {
  events: [string, number][] = [];
  ends: WatchEnd[] = [];
  onEvents(events: [string, number][]): void {
    for (const [name, ops] of events) this.events.push([name, ops]);
  }
  onEnd(end: WatchEnd): void {
    this.ends.push(end);
  }
  /** Every operation bit reported for `name`. */
  opsOf(name: string): number {
    return this.events.filter(([n]) => n === name).reduce((acc, [, ops]) => acc | ops, 0);
  }
  names(): string[] {
    return [...new Set(this.events.map(([name]) => name))].sort();
  }
}

const codeOf = async (p: Promise<unknown>): Promise<Code | undefined> => {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: Code }).code;
  }
};

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("WatchEngine (real inotify)", { skip: loadLibc() ? false : "no FFI in this runtime: watching is unavailable" }, () => {
  const engine = new WatchEngine(quiet);
  after(() => engine[Symbol.asyncDispose]());

  test("create, write, chmod, rename and remove map to their operation bits, named relative to the directory", async () => {
    const dir = freshDir();
    const sink = new Recorder();
    const handle = await engine.watch(dir, false, sink);
    try {
      assert.equal(handle.watches, 1);
      writeFileSync(join(dir, "a.txt"), "data");
      chmodSync(join(dir, "a.txt"), 0o600);
      renameSync(join(dir, "a.txt"), join(dir, "b.txt"));
      unlinkSync(join(dir, "b.txt"));
      await engine.sync();
      assert.equal(sink.opsOf("a.txt"), OP_CREATE | OP_WRITE | OP_CHMOD | OP_RENAME);
      assert.equal(sink.opsOf("b.txt"), OP_CREATE | OP_REMOVE, "the arrival half of a rename is a create");
      assert.deepEqual(sink.ends, []);
    } finally {
      handle.close();
    }
  });

  test("close() stops the events of that watch only; the engine's size follows", async () => {
    const dir = freshDir();
    const one = new Recorder();
    const two = new Recorder();
    const before = engine.size;
    const h1 = await engine.watch(dir, false, one);
    const h2 = await engine.watch(dir, false, two);
    assert.equal(engine.size, before + 2);
    writeFileSync(join(dir, "first"), "");
    await engine.sync();
    h1.close();
    h1.close(); // idempotent
    assert.equal(engine.size, before + 1);
    writeFileSync(join(dir, "second"), "");
    await engine.sync();
    assert.deepEqual(one.names(), ["first"]);
    assert.deepEqual(two.names(), ["first", "second"]);
    h2.close();
    assert.equal(engine.size, before);
  });

  test("recursive: every directory below is watched, also one made after the start; not recursive: only the top", async () => {
    const dir = freshDir();
    mkdirSync(join(dir, "sub", "deep"), { recursive: true });
    const flat = new Recorder();
    const tree = new Recorder();
    const hf = await engine.watch(dir, false, flat);
    const ht = await engine.watch(dir, true, tree);
    try {
      assert.equal(ht.watches, 3, "dir, sub, sub/deep");
      writeFileSync(join(dir, "sub", "deep", "f.txt"), "x");
      mkdirSync(join(dir, "later"));
      await engine.sync();
      writeFileSync(join(dir, "later", "g.txt"), "y");
      await engine.sync();
      assert.equal(tree.opsOf("sub/deep/f.txt") & (OP_CREATE | OP_WRITE), OP_CREATE | OP_WRITE);
      assert.ok(tree.opsOf("later") & OP_CREATE);
      assert.ok(tree.opsOf("later/g.txt") & OP_CREATE, `a file in a directory made later: ${JSON.stringify(tree.events)}`);
      assert.deepEqual(flat.names(), ["later"], "without recursion nothing below the top is reported");
    } finally {
      hf.close();
      ht.close();
    }
  });

  test("excluded names and paths get no events and no watches, with everything beneath them", async () => {
    const dir = freshDir();
    mkdirSync(join(dir, "node_modules", "pkg"), { recursive: true });
    mkdirSync(join(dir, "build", "out"), { recursive: true });
    const sink = new Recorder();
    const handle = await engine.watch(dir, true, sink, ["node_modules", "*.log", "build/out"]);
    try {
      assert.equal(handle.watches, 2, "dir and build; node_modules and build/out are not watched");
      writeFileSync(join(dir, "node_modules", "pkg", "index.js"), "x");
      writeFileSync(join(dir, "debug.log"), "x");
      writeFileSync(join(dir, "build", "out", "bin"), "x");
      writeFileSync(join(dir, "build", "kept.txt"), "x");
      writeFileSync(join(dir, "kept.txt"), "x");
      await engine.sync();
      assert.deepEqual(sink.names(), ["build/kept.txt", "kept.txt"]);
    } finally {
      handle.close();
    }
  });

  test("the watched directory going away ends the watch with `gone`", async () => {
    const dir = freshDir();
    const sink = new Recorder();
    const before = engine.size;
    await engine.watch(dir, false, sink);
    rmSync(dir, { recursive: true });
    await until(() => sink.ends.length > 0, "the end of the watch");
    assert.deepEqual(sink.ends, [{ kind: "gone" }]);
    assert.equal(engine.size, before);
  });

  test("a watch that cannot start is refused: a missing path not_found, a file invalid_argument", async () => {
    const dir = freshDir();
    writeFileSync(join(dir, "file"), "");
    const before = engine.size;
    assert.equal(await codeOf(engine.watch(join(dir, "missing"), false, new Recorder())), Code.NotFound);
    assert.equal(await codeOf(engine.watch(join(dir, "file"), false, new Recorder())), Code.InvalidArgument);
    assert.equal(engine.size, before, "nothing is left registered");
  });

  test("after disposal a watch is unavailable and open watches get no end call", async () => {
    const own = new WatchEngine(quiet);
    const sink = new Recorder();
    await own.watch(freshDir(), false, sink);
    await own[Symbol.asyncDispose]();
    await own[Symbol.asyncDispose](); // idempotent
    assert.equal(await codeOf(own.watch(freshDir(), false, new Recorder())), Code.Unavailable);
    assert.deepEqual(sink.ends, []);
    assert.equal(own.size, 0);
    await own.sync(); // nothing to wait for
  });
});
