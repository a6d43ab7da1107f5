import assert from "node:assert/strict";
import { test } from "node:test";
import { Code } from "../errors.ts";
import type { User } from "../users/user-db.ts";
import { type StartRequestFields, startRequestOf } from "./start-request.ts";

// Plain objects with the message's fields (a generated message passes too: rpc/ and ws/ hand theirs over, and tsc checks it).
const msg = (fields: StartRequestFields): StartRequestFields => fields;
const user: User = { name: "u", uid: 1000, gid: 1000, home: "/home/u", shell: "/bin/sh", groups: [] };

const codeOf = (fn: () => unknown): Code | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: Code }).code;
  }
};

test("the fields become the domain request; stdin defaults to open, the pty to none", () => {
  const req = msg({ process: { cmd: "/bin/echo", args: ["hi"], envs: { A: "1" }, cwd: "/tmp" }, tag: "t" });
  assert.deepEqual(startRequestOf(req, user, 5_000), {
    cmd: "/bin/echo",
    args: ["hi"],
    envs: { A: "1" },
    cwd: "/tmp",
    user,
    tag: "t",
    pty: undefined,
    stdin: true,
    timeoutMs: 5_000,
  });
  const closed = msg({ process: { cmd: "x", args: [], envs: {} }, stdin: false, pty: { size: { cols: 80, rows: 24 } } });
  const r = startRequestOf(closed, user, undefined);
  assert.equal(r.stdin, false);
  assert.deepEqual(r.pty, { cols: 80, rows: 24 });
});

test("no process is InvalidArgument, a PTY size out of 1..65535 too, a deadline already passed DeadlineExceeded", () => {
  assert.equal(codeOf(() => startRequestOf(msg({}), user, undefined)), Code.InvalidArgument);
  for (const size of [{ cols: 0, rows: 24 }, { cols: 80, rows: 0 }, { cols: 65536, rows: 1 }, undefined]) {
    const req = msg({ process: { cmd: "x", args: [], envs: {} }, pty: size ? { size } : {} });
    assert.equal(codeOf(() => startRequestOf(req, user, undefined)), Code.InvalidArgument, JSON.stringify(size));
  }
  assert.equal(codeOf(() => startRequestOf(msg({ process: { cmd: "x", args: [], envs: {} } }), user, 0)), Code.DeadlineExceeded);
});
