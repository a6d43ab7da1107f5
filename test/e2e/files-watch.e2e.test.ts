/**
 * Uploads as watchers and listings see them: exactly what E2B's Go envd (which writes in place)
 * makes the kernel report, never the daemon's temporary names, for every upload form, with
 * streaming and polling watchers, recursive and not. The expected events are checked twice: as
 * literal lists, and against a reference writer in this process that makes Go's system calls
 * (stat, chown, open O_CREAT|O_TRUNC, chown, write) under the same watchers.
 */
import assert from "node:assert/strict";
import { chownSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { EventType } from "../../src/gen/filesystem/filesystem_pb.js";
import { type Daemon, eventually, RUNTIMES, startDaemon } from "./harness.ts";

interface Seen {
  name: string;
  type: string;
  size?: number;
  entryName?: string;
}

interface Observer {
  label: string;
  events: Seen[];
  stop(): Promise<void>;
}

const TEMP_NAME = /\.e2b-(upload|compose)/;

/** Streaming WatchDir through our Connect client, names made relative to `dir`. */
async function streamObserver(envd: Daemon, watchPath: string, prefix: string, recursive: boolean): Promise<Observer> {
  const ctrl = new AbortController();
  const o: Observer = { label: `stream${recursive ? " recursive" : ""}`, events: [], stop: async () => {} };
  const stream = envd.filesystem.watchDir({ path: watchPath, recursive, includeEntry: true }, { signal: ctrl.signal, timeoutMs: 600_000 });
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.value?.event.case, "start");
  const done = (async () => {
    try {
      for (let r = await it.next(); !r.done; r = await it.next()) {
        const e = r.value.event;
        if (e.case !== "filesystem") continue;
        o.events.push(seen(e.value.name, prefix, EventType[e.value.type], e.value.entry));
      }
    } catch {
      // aborted at the end
    }
  })();
  o.stop = async () => {
    ctrl.abort();
    await done;
  };
  return o;
}

/** A polling watcher (CreateWatcher / GetWatcherEvents), polled in the background. */
async function pollObserver(envd: Daemon, watchPath: string, prefix: string, recursive: boolean): Promise<Observer> {
  const { watcherId } = await envd.filesystem.createWatcher({ path: watchPath, recursive, includeEntry: true });
  const o: Observer = { label: `poll${recursive ? " recursive" : ""}`, events: [], stop: async () => {} };
  let running = true;
  const done = (async () => {
    while (running) {
      const res = await envd.filesystem.getWatcherEvents({ watcherId });
      for (const e of res.events) o.events.push(seen(e.name, prefix, EventType[e.type], e.entry));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  o.stop = async () => {
    running = false;
    await done;
    await envd.filesystem.removeWatcher({ watcherId });
  };
  return o;
}

/** The real e2b SDK's watchDir (streaming, not recursive). */
async function sdkObserver(envd: Daemon, dir: string): Promise<Observer> {
  const sbx = await envd.sandbox();
  const o: Observer = { label: "e2b SDK watchDir", events: [], stop: async () => {} };
  const handle = await sbx.files.watchDir(dir, (e) => {
    o.events.push({ name: e.name, type: String(e.type).toUpperCase(), ...(e.entry ? { size: Number(e.entry.size), entryName: e.entry.name } : {}) });
  }, { includeEntry: true, timeoutMs: 0 });
  o.stop = () => handle.stop();
  return o;
}

function seen(name: string, prefix: string, type: string, entry: { name: string; size: bigint } | undefined): Seen {
  return {
    name: prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name,
    type: type.replace(/^EVENT_TYPE_/, ""),
    ...(entry ? { size: Number(entry.size), entryName: entry.name } : {}),
  };
}

/** What Go envd's processFile does to the disk, system call for system call. */
function goInPlaceWrite(path: string, data: Buffer): void {
  const existed = existsSync(path);
  if (existed) chownSync(path, 0, 0);
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o666);
  if (!existed) chownSync(path, 0, 0);
  if (data.length > 0) writeSync(fd, data);
  closeSync(fd);
}

/** "TYPE name" for the events of `names`, consecutive repeats merged (the kernel merges some, not all). */
function shape(events: Seen[], name: string): string[] {
  const out: string[] = [];
  for (const e of events) {
    if (e.name !== name) continue;
    const s = e.type;
    if (out.at(-1) !== s) out.push(s);
  }
  return out;
}

for (const runtime of RUNTIMES) {
  describe(`uploads as watchers see them (${runtime})`, () => {
    let envd: Daemon;
    let root: string;
    before(async () => {
      envd = await startDaemon({ runtime });
      root = mkdtempSync(join(tmpdir(), "envd-upload-watch-"));
    });
    after(async () => {
      await envd[Symbol.asyncDispose]();
      rmSync(root, { recursive: true, force: true });
    });

    test("every upload form: create, chmod, write for a new file; chmod, write for an existing one; never a temporary name", async () => {
      const parent = join(root, "forms");
      const dir = join(parent, "sub");
      const sources = join(root, "forms-sources");
      mkdirSync(dir, { recursive: true });
      mkdirSync(sources);
      const observers = [
        await streamObserver(envd, dir, "", false),
        await streamObserver(envd, parent, "sub/", true),
        await pollObserver(envd, dir, "", false),
        await pollObserver(envd, parent, "sub/", true),
        await sdkObserver(envd, dir),
      ];
      const sbx = await envd.sandbox();
      const post = async (query: string, init: RequestInit) => {
        const res = await envd.fetch(`/files?${query}`, { method: "POST", ...init });
        assert.equal(res.status, 200, await res.clone().text());
        await res.arrayBuffer();
      };
      const octet = (path: string, data: Buffer) => post(`path=${encodeURIComponent(path)}`, { headers: { "content-type": "application/octet-stream" }, body: data });
      const multipart = (path: string, data: Buffer) => {
        const form = new FormData();
        form.append("file", new Blob([new Uint8Array(data)]), path);
        return post("", { body: form });
      };
      const compose = async (dest: string, parts: Buffer[]) => {
        const paths = parts.map((_, i) => join(sources, `part-${i}-${Math.random().toString(36).slice(2)}`));
        for (const [i, p] of paths.entries()) await octet(p, parts[i] as Buffer);
        const res = await envd.fetch("/files/compose", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ source_paths: paths, destination: dest }),
        });
        assert.equal(res.status, 200, await res.text());
      };
      const data = (n: number, tag: string) => Buffer.alloc(n, tag);
      const stream = (buf: Buffer) =>
        new ReadableStream<Uint8Array>({
          start(c) {
            for (let off = 0; off < buf.length; off += 4096) c.enqueue(buf.subarray(off, off + 4096));
            c.close();
          },
        });

      // [name, what it does, whether the file existed, final size]
      const ops: [string, () => Promise<void> | void, boolean, number][] = [
        ["ref-new.txt", () => goInPlaceWrite(join(dir, "ref-new.txt"), data(1000, "r")), false, 1000],
        ["ref-new.txt", () => goInPlaceWrite(join(dir, "ref-new.txt"), data(3000, "R")), true, 3000],
        ["ref-empty", () => goInPlaceWrite(join(dir, "ref-empty"), Buffer.alloc(0)), false, 0],
        ["multipart.txt", () => multipart(join(dir, "multipart.txt"), data(1000, "m")), false, 1000],
        ["multipart.txt", () => multipart(join(dir, "multipart.txt"), data(2000, "M")), true, 2000],
        ["octet.bin", () => octet(join(dir, "octet.bin"), data(300_000, "o")), false, 300_000],
        ["octet.bin", () => octet(join(dir, "octet.bin"), data(10, "O")), true, 10],
        ["empty", () => octet(join(dir, "empty"), Buffer.alloc(0)), false, 0],
        ["gzip.txt", () => post(`path=${encodeURIComponent(join(dir, "gzip.txt"))}`, { headers: { "content-type": "application/octet-stream", "content-encoding": "gzip" }, body: gzipSync(data(5000, "g")) }), false, 5000],
        ["composed.txt", () => compose(join(dir, "composed.txt"), [data(100, "a"), data(200, "b")]), false, 300],
        ["composed.txt", () => compose(join(dir, "composed.txt"), [data(10, "c")]), true, 10],
        ["sdk-string.txt", async () => void (await sbx.files.write(join(dir, "sdk-string.txt"), "hello from the SDK")), false, 18],
        ["sdk-string.txt", async () => void (await sbx.files.write(join(dir, "sdk-string.txt"), "again")), true, 5],
        ["sdk-blob.bin", async () => void (await sbx.files.write(join(dir, "sdk-blob.bin"), new Blob([new Uint8Array(data(4096, "b"))]))), false, 4096],
        ["sdk-stream.bin", async () => void (await sbx.files.write(join(dir, "sdk-stream.bin"), stream(data(70_000, "s")))), false, 70_000],
        ["sdk-many-2.txt", async () => void (await sbx.files.write([{ path: join(dir, "sdk-many-1.txt"), data: "one" }, { path: join(dir, "sdk-many-2.txt"), data: "two!" }])), false, 4],
      ];
      const slices: Seen[][][] = [];
      for (const [i, [, run]] of ops.entries()) {
        const before = observers.map((o) => o.events.length);
        await run();
        const sentinel = `sentinel-${i}`;
        writeFileSync(join(dir, sentinel), "");
        await eventually(() => observers.every((o) => o.events.some((e) => e.name === sentinel)), `${sentinel} seen by every watcher`, 20_000);
        slices.push(observers.map((o, k) => o.events.slice(before[k], o.events.findIndex((e) => e.name === sentinel))));
      }
      for (const o of observers) await o.stop();

      const NEW = ["CREATE", "CHMOD", "WRITE"];
      const EXISTING = ["CHMOD", "WRITE"];
      const NEW_EMPTY = ["CREATE", "CHMOD"];
      for (const [i, [name, , existed, size]] of ops.entries()) {
        for (const [k, o] of observers.entries()) {
          const events = slices[i]?.[k] ?? [];
          assert.deepEqual(events.filter((e) => TEMP_NAME.test(e.name)), [], `${o.label}: temporary names for ${name}`);
          const expected = existed ? EXISTING : size === 0 ? NEW_EMPTY : NEW;
          assert.deepEqual(shape(events, name), expected, `${o.label}, op ${i} (${name}): ${JSON.stringify(events)}`);
          if (name === "sdk-many-2.txt") assert.deepEqual(shape(events, "sdk-many-1.txt"), NEW, `${o.label}: sdk-many-1.txt`);
          // With include_entry the events carry the final EntryInfo of the target. Not for the
          // reference writer: it writes in place, as Go does, so the size an event's stat sees
          // depends on when the daemon looks (the race our uploads do not have).
          if (name.startsWith("ref-")) continue;
          for (const e of events.filter((x) => x.name === name && o.label !== "e2b SDK watchDir")) {
            assert.equal(e.entryName, name, `${o.label}: entry of ${e.type} ${name}`);
            assert.equal(e.size, size, `${o.label}: size in ${e.type} ${name}`);
          }
        }
      }
      // The reference (Go's calls, in place) produced the same shapes the literal lists say.
      const streamIndex = 0;
      assert.deepEqual(shape(slices[0]?.[streamIndex] ?? [], "ref-new.txt"), NEW);
      assert.deepEqual(shape(slices[1]?.[streamIndex] ?? [], "ref-new.txt"), EXISTING);
      assert.deepEqual(shape(slices[2]?.[streamIndex] ?? [], "ref-empty"), NEW_EMPTY);
    });

    test("while an upload is in flight its temporary file is in no listing, Stat or watch; a look-alike user file is; an abort leaves nothing", async () => {
      const dir = join(root, "inflight");
      mkdirSync(dir);
      writeFileSync(join(dir, "target.txt"), "old content");
      // A user's own file that merely looks like ours must stay visible.
      const lookAlike = ".e2b-upload-0123456789abcdef";
      const watcher = await streamObserver(envd, dir, "", false);
      const poller = await pollObserver(envd, dir, "", true);
      writeFileSync(join(dir, lookAlike), "mine");
      let send!: (c: Uint8Array) => void;
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          send = (chunk) => c.enqueue(chunk);
        },
      });
      const ctrl = new AbortController();
      const upload = envd
        .fetch(`/files?path=${encodeURIComponent(join(dir, "target.txt"))}`, {
          method: "POST",
          headers: { "content-type": "application/octet-stream" },
          body,
          duplex: "half",
          signal: ctrl.signal,
        } as RequestInit)
        .catch((e: unknown) => e);
      send(Buffer.alloc(64 * 1024, "x"));
      const temp = await eventually(() => readdirSync(dir).find((n) => n.startsWith(".e2b-upload-") && n !== lookAlike), "the temporary file on disk");
      const listed = (await envd.filesystem.listDir({ path: dir, depth: 1 })).entries.map((e) => e.name).sort();
      assert.deepEqual(listed, [lookAlike, "target.txt"]);
      const stat = await envd.filesystem.stat({ path: join(dir, temp) }).then(() => "found", (e: { code?: number }) => e.code);
      assert.equal(stat, 5, "Stat of the temporary name is not_found");
      assert.equal((await envd.filesystem.stat({ path: join(dir, lookAlike) })).entry?.name, lookAlike);
      ctrl.abort();
      await upload;
      await eventually(() => !existsSync(join(dir, temp)), "the temporary file removed after the abort");
      writeFileSync(join(dir, "sentinel"), "");
      await eventually(() => [watcher, poller].every((o) => o.events.some((e) => e.name === "sentinel")), "sentinel");
      await watcher.stop();
      await poller.stop();
      for (const o of [watcher, poller]) {
        assert.deepEqual(o.events.filter((e) => e.name === temp || e.name === "target.txt"), [], `${o.label}: nothing for an aborted upload`);
        assert.ok(o.events.some((e) => e.name === lookAlike && e.type === "CREATE"), `${o.label}: the look-alike file is reported`);
      }
    });
  });

  describe(`temporary files left by a crash (${runtime})`, () => {
    test("are removed at the next start: only ours, only where we wrote", async () => {
      const state = mkdtempSync(join(tmpdir(), "envd-state-"));
      const dir = mkdtempSync(join(tmpdir(), "envd-crash-"));
      try {
        const lookAlike = join(dir, ".e2b-upload-fedcba9876543210");
        writeFileSync(lookAlike, "a user's file");
        const crashed = await startDaemon({ runtime, env: { ENVD_STATE_DIR: state } });
        let send!: (c: Uint8Array) => void;
        const body = new ReadableStream<Uint8Array>({
          start(c) {
            send = (chunk) => c.enqueue(chunk);
          },
        });
        const upload = crashed
          .fetch(`/files?path=${encodeURIComponent(join(dir, "big.bin"))}`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body, duplex: "half" } as RequestInit)
          .catch((e: unknown) => e);
        send(Buffer.alloc(64 * 1024, "x"));
        const temp = await eventually(() => readdirSync(dir).find((n) => n.startsWith(".e2b-upload-") && join(dir, n) !== lookAlike), "the temporary file");
        assert.equal(await crashed.stop("SIGKILL"), null);
        await upload;
        assert.ok(existsSync(join(dir, temp)), "the crash left it behind");

        await using envd = await startDaemon({ runtime, env: { ENVD_STATE_DIR: state } });
        assert.equal(existsSync(join(dir, temp)), false, "removed at start");
        assert.ok(existsSync(lookAlike), "a look-alike user file stays");
        const line = envd.logs.find((l) => l.msg === "removed temporary files left by an earlier run");
        assert.deepEqual(line?.paths, [join(dir, temp)]);
        assert.deepEqual(readdirSync(state).filter((n) => n.includes(String(crashed.pid))), [], "the dead daemon's journal is gone");
      } finally {
        rmSync(state, { recursive: true, force: true });
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
