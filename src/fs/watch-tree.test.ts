import assert from "node:assert/strict";
import { test } from "node:test";
import {
  IN_ATTRIB,
  IN_CREATE,
  IN_DELETE,
  IN_DELETE_SELF,
  IN_IGNORED,
  IN_ISDIR,
  IN_MODIFY,
  IN_MOVED_FROM,
  IN_MOVED_TO,
  IN_Q_OVERFLOW,
  OP_CREATE,
  OP_REMOVE,
  OP_RENAME,
  OP_WRITE,
  type RawEvent,
} from "./inotify.ts";
import { type TreeSyscalls, WatchTree } from "./watch-tree.ts";

/** A fake directory tree: path → children (dirs end with "/", files with content end with "+"). */
function fakeFs(tree: Record<string, string[]>) {
  const watched = new Map<string, number>();
  const removed: number[] = [];
  let next = 1;
  let addError = 0;
  const sys: TreeSyscalls = {
    addWatch(path) {
      if (addError) return -addError;
      if (!(path in tree)) return -2;
      if (!watched.has(path)) watched.set(path, next++);
      return watched.get(path) as number;
    },
    rmWatch(wd) {
      removed.push(wd);
    },
    readDir(path) {
      const kids = tree[path];
      if (!kids) return undefined;
      return kids.map((k) => ({
        name: k.replace(/[/+]$/, ""),
        isDir: k.endsWith("/"),
        hasData: k.endsWith("+"),
      }));
    },
  };
  return {
    sys,
    tree,
    wd: (p: string) => watched.get(p) as number,
    removed,
    failAdds: (errno: number) => {
      addError = errno;
    },
  };
}

const ev = (wd: number, mask: number, name = ""): RawEvent => ({ wd, mask, cookie: 0, name });

test("non-recursive: events are named relative to the root, in fsnotify's op order", () => {
  const fs = fakeFs({ "/r": ["a"] });
  const t = new WatchTree("/r", false, fs.sys);
  assert.equal(t.start(), undefined);
  assert.equal(t.watchCount, 1);
  const root = fs.wd("/r");
  assert.deepEqual(
    t.handle([ev(root, IN_CREATE, "f"), ev(root, IN_MODIFY, "f"), ev(root, IN_ATTRIB, "f"), ev(root, IN_MOVED_FROM, "f"), ev(root, IN_DELETE, "g")]),
    [
      ["f", OP_CREATE],
      ["f", OP_WRITE],
      ["f", 4],
      ["f", OP_RENAME],
      ["g", OP_REMOVE],
    ],
  );
  // a new directory is not descended into
  assert.deepEqual(t.handle([ev(root, IN_CREATE | IN_ISDIR, "d")]), [["d", OP_CREATE]]);
  assert.equal(t.watchCount, 1);
});

test("recursive: the tree is watched, new directories are scanned, duplicates from the queue dropped", () => {
  const fs = fakeFs({ "/r": ["s/", "x"], "/r/s": ["t/"], "/r/s/t": [] });
  const t = new WatchTree("/r", true, fs.sys);
  t.start();
  assert.equal(t.watchCount, 3);
  fs.tree["/r/n"] = ["m/", "file+", "empty"];
  fs.tree["/r/n/m"] = ["leaf+"];
  const out = t.handle([ev(fs.wd("/r/s/t"), IN_CREATE, "z"), ev(fs.wd("/r"), IN_CREATE | IN_ISDIR, "n")]);
  assert.deepEqual(out, [
    ["s/t/z", OP_CREATE],
    ["n", OP_CREATE],
    ["n/m", OP_CREATE],
    ["n/file", OP_CREATE | OP_WRITE],
    ["n/empty", OP_CREATE],
    ["n/m/leaf", OP_CREATE | OP_WRITE],
  ]);
  assert.equal(t.watchCount, 5);
  // the kernel's own CREATE/WRITE for what the scan reported are not repeated, but later changes are
  assert.deepEqual(
    t.handle([ev(fs.wd("/r/n"), IN_CREATE, "file"), ev(fs.wd("/r/n"), IN_MODIFY, "file"), ev(fs.wd("/r/n"), IN_MODIFY, "file")]),
    [["n/file", OP_WRITE]],
  );
  t.drained();
  assert.deepEqual(t.handle([ev(fs.wd("/r/n"), IN_CREATE, "empty")]), [["n/empty", OP_CREATE]]);
});

test("recursive: a directory moved out loses its watches; a subdirectory's own events are not doubled", () => {
  const fs = fakeFs({ "/r": ["s/"], "/r/s": ["t/"], "/r/s/t": [] });
  const t = new WatchTree("/r", true, fs.sys);
  t.start();
  const s = fs.wd("/r/s");
  const st = fs.wd("/r/s/t");
  assert.deepEqual(t.handle([ev(s, IN_ATTRIB), ev(fs.wd("/r"), IN_ATTRIB | IN_ISDIR, "s")]), [["s", 4]]);
  assert.deepEqual(t.handle([ev(fs.wd("/r"), IN_MOVED_FROM | IN_ISDIR, "s")]), [["s", OP_RENAME]]);
  assert.deepEqual(fs.removed.sort(), [s, st].sort());
  assert.equal(t.watchCount, 1);
  // late events from the moved tree are ignored
  assert.deepEqual(t.handle([ev(st, IN_CREATE, "late"), ev(st, IN_IGNORED)]), []);
});

test("the root going away, queue overflow and the watch limit end the tree", () => {
  let fs = fakeFs({ "/r": [] });
  let t = new WatchTree("/r", false, fs.sys);
  t.start();
  const root = fs.wd("/r");
  assert.deepEqual(t.handle([ev(root, IN_DELETE_SELF), ev(root, IN_IGNORED)]), [[".", OP_REMOVE]]);
  assert.deepEqual(t.end, { kind: "gone" });

  fs = fakeFs({ "/r": [] });
  t = new WatchTree("/r", false, fs.sys);
  t.start();
  assert.deepEqual(t.handle([ev(fs.wd("/r"), IN_CREATE, "a"), ev(-1, IN_Q_OVERFLOW), ev(fs.wd("/r"), IN_CREATE, "b")]), [["a", OP_CREATE]]);
  assert.deepEqual(t.end, { kind: "overflow" });

  fs = fakeFs({ "/r": ["d/"], "/r/d": [] });
  t = new WatchTree("/r", true, fs.sys);
  t.start();
  fs.tree["/r/e"] = [];
  fs.failAdds(28);
  t.handle([ev(fs.wd("/r"), IN_CREATE | IN_ISDIR, "e")]);
  assert.deepEqual(t.end, { kind: "watch-limit" });

  fs = fakeFs({});
  t = new WatchTree("/missing", false, fs.sys);
  assert.deepEqual(t.start(), { kind: "failed", errno: 2, path: "/missing" });
});

test("a directory moved into the tree is watched and its contents reported", () => {
  const fs = fakeFs({ "/r": [], "/r/in": ["a+"] });
  const t = new WatchTree("/r", true, fs.sys);
  t.start();
  assert.deepEqual(t.handle([ev(fs.wd("/r"), IN_MOVED_TO | IN_ISDIR, "in")]), [
    ["in", OP_CREATE],
    ["in/a", OP_CREATE | OP_WRITE],
  ]);
  assert.equal(t.watchCount, 2);
});

test("excluded paths get no watch, no scan and no events, at any depth; a name moved out of exclusion is watched", async () => {
  const { compileExcludes } = await import("./exclude-globs.ts");
  const fs = fakeFs({
    "/r": ["src/", "node_modules/", "a.log+"],
    "/r/src": ["x+", "node_modules/"],
    "/r/src/node_modules": ["deep/"],
    "/r/src/node_modules/deep": [],
    "/r/node_modules": ["pkg/"],
    "/r/node_modules/pkg": ["index.js+"],
    "/r/lib": ["y+"],
  });
  const tree = new WatchTree("/r", true, fs.sys, compileExcludes(["node_modules", "*.log"]));
  assert.equal(tree.start(), undefined);
  assert.equal(tree.watchCount, 2, "only /r and /r/src");
  assert.equal(fs.wd("/r/node_modules"), undefined);
  assert.equal(fs.wd("/r/src/node_modules"), undefined);
  const root = fs.wd("/r");
  assert.deepEqual(
    tree.handle([
      ev(root, IN_CREATE, "b.log"),
      ev(root, IN_MODIFY, "a.log"),
      ev(root, IN_CREATE | IN_ISDIR, "node_modules"),
      ev(root, IN_CREATE, "kept"),
      ev(root, IN_MOVED_TO | IN_ISDIR, "lib"),
    ]),
    [
      ["kept", OP_CREATE],
      ["lib", OP_CREATE],
      ["lib/y", OP_CREATE | OP_WRITE],
    ],
  );
  assert.equal(tree.watchCount, 3, "lib watched, nothing under node_modules");
});
