/**
 * The layer rules of biome.json, shown to fail: each room gets probe files that import what the
 * rules forbid it (and what they allow), linted in a scratch copy of the project's biome.json, and
 * every forbidden import must be reported by `noRestrictedImports`, every allowed one must not. A
 * type-only import cycle must be reported by `noImportCycles`. And every folder of src/ must be a
 * room the rules know, so a new folder cannot slip in without a rule.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";

const ROOT = join(import.meta.dirname, "..");
const BIOME = join(ROOT, "node_modules", ".bin", "biome");

const DOMAIN = ["process", "fs", "transfer", "ports", "users", "control", "snapshot", "upkeep"];
const ADAPTERS = ["rpc", "http", "ws"];
/** Folders of src/ that hold no rule of their own: generated code, and sys/ (a base room, checked below). */
const OTHER = ["gen", "sys"];
const WIRING = ["../main.ts", "../config.ts", "../daemon.ts", "../server.ts"];

interface Probe {
  /** Path of the probe file, relative to the scratch project. */
  file: string;
  /** What it imports. */
  specifier: string;
  forbidden: boolean;
}

function probes(): Probe[] {
  const out: Probe[] = [];
  const add = (room: string, specifiers: string[], forbidden: boolean) => {
    for (const specifier of specifiers) out.push({ file: `src/${room}/probe-${out.length}.ts`, specifier, forbidden });
  };
  for (const room of DOMAIN) {
    add(room, ["../rpc/x.ts", "../http/x.ts", "../ws/x.ts", "../gen/process/process_pb.js", "@connectrpc/connect", "@bufbuild/protobuf", ...WIRING], true);
    add(room, ["../errors.ts", "../log.ts", "../session.ts", "../sys/libc.ts", "../users/user-db.ts", "./sibling.ts", "node:fs"], false);
  }
  add("rpc", ["../http/x.ts", "../ws/x.ts", ...WIRING], true);
  add("rpc", ["../process/start-request.ts", "../users/request-user.ts", "../gen/process/process_pb.js", "@connectrpc/connect"], false);
  add("http", ["../rpc/x.ts", "../gen/process/process_pb.js", ...WIRING], true);
  add("http", ["../ws/websocket.ts", "../transfer/x.ts", "@connectrpc/connect"], false);
  add("ws", ["../rpc/start-request.ts", "../rpc/x.ts", "../http/x.ts", "../http/headers.ts", ...WIRING], true);
  add("ws", ["../process/start-request.ts", "../users/request-user.ts", "../gen/process/process_pb.js", "@connectrpc/connect", "./websocket.ts"], false);
  add("sys", ["../errors.ts", "./other.ts"], true);
  add("sys", ["node:fs"], false);
  for (const base of ["errors", "log", "lifecycle", "session", "version"]) {
    out.push({ file: `src/${base}.ts`, specifier: "./users/user-db.ts", forbidden: true });
  }
  return out;
}

interface Diagnostic {
  category: string;
  location: { path: string };
}

let scratch: string;
let diagnostics: Diagnostic[];
const all = probes();

before(() => {
  scratch = mkdtempSync(join(tmpdir(), "envd-layer-rules-"));
  copyFileSync(join(ROOT, "biome.json"), join(scratch, "biome.json"));
  const write = (file: string, text: string) => {
    mkdirSync(dirname(join(scratch, file)), { recursive: true });
    writeFileSync(join(scratch, file), text);
  };
  for (const p of all) {
    const quoted = JSON.stringify(p.specifier);
    write(p.file, `import type * as probe from ${quoted};\nexport type Probe = typeof probe;\n`);
  }
  // A cycle of type-only imports between two domain modules.
  write("src/fs/cycle-a.ts", 'import type { B } from "./cycle-b.ts";\nexport interface A { b?: B }\n');
  write("src/fs/cycle-b.ts", 'import type { A } from "./cycle-a.ts";\nexport interface B { a?: A }\n');
  let out: string;
  try {
    out = execFileSync(BIOME, ["lint", "--vcs-enabled=false", "--max-diagnostics=none", "--reporter=json", "."], {
      cwd: scratch,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (err) {
    // Exit status 1 when there are errors (there must be): the report is still on stdout.
    out = (err as { stdout?: string }).stdout ?? "";
  }
  diagnostics = (JSON.parse(out) as { diagnostics: Diagnostic[] }).diagnostics;
});

after(() => rmSync(scratch, { recursive: true, force: true }));

const reported = (file: string, category: string) =>
  diagnostics.some((d) => d.category === category && d.location.path.replace(/\\/g, "/") === file);

describe("layer rules (biome.json)", () => {
  test("every import a room must not make is reported, and none it may make", () => {
    const missed = all.filter((p) => p.forbidden && !reported(p.file, "lint/style/noRestrictedImports"));
    const wrong = all.filter((p) => !p.forbidden && reported(p.file, "lint/style/noRestrictedImports"));
    assert.deepEqual(
      missed.map((p) => `${p.file} → ${p.specifier}`),
      [],
      "forbidden imports that no rule reports",
    );
    assert.deepEqual(
      wrong.map((p) => `${p.file} → ${p.specifier}`),
      [],
      "allowed imports that a rule reports",
    );
  });

  test("an import cycle of type-only imports is reported", () => {
    assert.ok(reported("src/fs/cycle-a.ts", "lint/suspicious/noImportCycles"), "cycle-a → cycle-b → cycle-a");
  });

  test("every folder of src/ is a room the rules know", () => {
    const folders = readdirSync(join(ROOT, "src"), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    assert.deepEqual(folders, [...DOMAIN, ...ADAPTERS, ...OTHER].sort(), "a new folder needs its row in biome.json and here");
  });
});
