import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_PORT, parseConfig } from "./config.ts";

test("flags take one dash or two, and values with a space or =", () => {
  const r = parseConfig(["-port", "1234", "--isnotfc", "-cgroup-root=/cg", "--log-level", "debug", "-cmd", "echo hi"], {});
  assert.equal(r.kind, "run");
  if (r.kind !== "run") return;
  assert.equal(r.config.port, 1234);
  assert.equal(r.config.isNotFc, true);
  assert.equal(r.config.cgroupRoot, "/cg");
  assert.equal(r.config.logLevel, "debug");
  assert.equal(r.config.cmd, "echo hi");
  assert.equal(r.config.flavor, "e2b");
});

test("defaults, -version, -commit, help and errors", () => {
  const r = parseConfig([], {});
  assert.equal(r.kind === "run" && r.config.port, DEFAULT_PORT);
  assert.deepEqual(parseConfig(["-version"], {}), { kind: "version" });
  assert.deepEqual(parseConfig(["--version"], {}), { kind: "version" });
  assert.deepEqual(parseConfig(["-commit"], {}), { kind: "commit" });
  assert.equal(parseConfig(["-h"], {}).kind, "error");
  assert.equal(parseConfig(["--help"], {}).kind, "help");
  assert.match((parseConfig(["-bogus"], {}) as { message: string }).message, /flag provided but not defined: -bogus/);
  assert.match((parseConfig(["-port"], {}) as { message: string }).message, /needs an argument/);
  assert.match((parseConfig(["-port", "99999"], {}) as { message: string }).message, /invalid value/);
  assert.match((parseConfig(["-port", "abc"], {}) as { message: string }).message, /invalid value/);
  assert.match((parseConfig(["-flavor", "x"], {}) as { message: string }).message, /flavor/);
  assert.equal(parseConfig(["stray"], {}).kind, "error");
  const w = parseConfig(["-verbose", "-flavor=wrenn"], {});
  assert.equal(w.kind === "run" && w.config.logLevel, "debug");
  assert.equal(w.kind === "run" && w.config.flavor, "wrenn");
});
