import assert from "node:assert/strict";
import { test } from "node:test";
import { Session } from "../session.ts";
import { isAllowed } from "./access-gate.ts";

test("no token: everything passes", () => {
  const s = new Session();
  assert.equal(isAllowed(s, "POST", "/process.Process/Start", undefined), true);
  assert.equal(isAllowed(s, "GET", "/envs", undefined), true);
});

test("with a token: only the exempt method+path pairs pass without it (docs/protocol.md §5.1)", () => {
  const s = new Session();
  s.setAccessToken("tok");
  for (const [method, path] of [
    ["GET", "/health"],
    ["GET", "/files"],
    ["POST", "/files"],
    ["POST", "/init"],
  ] as const) {
    assert.equal(isAllowed(s, method, path, undefined), true, `${method} ${path}`);
  }
  // Wrenn's host prepares without a token; in the E2B flavor (Go has no such route) it takes the token.
  assert.equal(isAllowed(s, "POST", "/snapshot/prepare", undefined, "wrenn"), true);
  assert.equal(isAllowed(s, "POST", "/snapshot/prepare", undefined, "e2b"), false);
  assert.equal(isAllowed(s, "POST", "/snapshot/prepare", "wrong", "e2b"), false);
  assert.equal(isAllowed(s, "POST", "/snapshot/prepare", "tok", "e2b"), true);
  for (const [method, path] of [
    ["POST", "/process.Process/List"],
    ["POST", "/filesystem.Filesystem/Stat"],
    ["GET", "/envs"],
    ["GET", "/metrics"],
    ["POST", "/files/compose"],
    ["POST", "/health"],
    ["GET", "/init"],
    ["DELETE", "/files"],
    ["GET", "/health/"],
    ["GET", "//health"],
    ["GET", "/Health"],
    ["OPTIONS", "/envs"],
  ] as const) {
    assert.equal(isAllowed(s, method, path, undefined), false, `${method} ${path} without a token`);
    assert.equal(isAllowed(s, method, path, "wrong"), false, `${method} ${path} with a wrong token`);
    assert.equal(isAllowed(s, method, path, ""), false, `${method} ${path} with an empty token`);
    assert.equal(isAllowed(s, method, path, "tok"), true, `${method} ${path} with the token`);
  }
});
