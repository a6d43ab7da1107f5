import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { createLogger } from "../log.ts";
import { loadLibc, PR_SET_CHILD_SUBREAPER } from "../sys/libc.ts";
import { childrenOf, OrphanReaper, parseProcStat } from "./reaper.ts";
import { INIT_CHILD_ENV, selfCommand, shouldRunInit } from "./reaper-init.ts";

const log = createLogger("error", () => {});

describe("parseProcStat", () => {
  test("fields after the command name, which may hold spaces and parentheses", () => {
    assert.deepEqual(parseProcStat("4242 (sleep) Z 1 4200 4100 0 -1 4194308 0"), {
      pid: 4242,
      comm: "sleep",
      state: "Z",
      ppid: 1,
      pgrp: 4200,
      session: 4100,
    });
    assert.equal(parseProcStat("7 (a) b (c)) S 3 7 7 0")?.comm, "a) b (c)");
    assert.equal(parseProcStat("7 (a) b (c)) S 3 7 7 0")?.ppid, 3);
    assert.equal(parseProcStat("garbage"), undefined);
    assert.equal(parseProcStat(""), undefined);
  });
});

describe("shouldRunInit / selfCommand", () => {
  test("auto only as PID 1, on always, off never; never in the daemon child", () => {
    assert.equal(shouldRunInit("auto", {}, 1), true);
    assert.equal(shouldRunInit("auto", {}, 4242), false);
    assert.equal(shouldRunInit("on", {}, 4242), true);
    assert.equal(shouldRunInit("off", {}, 1), false);
    assert.equal(shouldRunInit("on", { [INIT_CHILD_ENV]: "1" }, 1), false);
  });

  test("re-running a script passes runtime flags and the script; a compiled binary only its arguments", () => {
    assert.deepEqual(selfCommand("/usr/bin/node", ["/usr/bin/node", "/app/main.ts", "--port", "1"], ["--no-warnings"]), {
      file: "/usr/bin/node",
      args: ["--no-warnings", "/app/main.ts", "--port", "1"],
    });
    assert.deepEqual(selfCommand("/usr/bin/envd", ["bun", "/$bunfs/root/envd", "-isnotfc"], []), {
      file: "/usr/bin/envd",
      args: ["-isnotfc"],
    });
  });
});

describe("OrphanReaper", { skip: loadLibc() ? undefined : "no FFI in this runtime" }, () => {
  test("as a subreaper, reaps re-parented orphans and leaves the runtime's own children alone", async () => {
    const libc = loadLibc();
    assert.ok(libc);
    // This test process becomes a subreaper: the shell's background children are re-parented here.
    assert.equal(libc.prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    const own = spawn("/bin/sh", ["-c", "for i in 1 2 3 4 5; do /bin/true & done; exit 7"]);
    const ownExit = new Promise<number | null>((r) => own.once("exit", (code) => r(code)));
    const reaper = new OrphanReaper({ libc, isOwn: (pid) => pid === own.pid, log });
    const deadline = Date.now() + 10_000;
    while (reaper.reaped < 5 && Date.now() < deadline) {
      reaper.reapOnce();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(reaper.reaped, 5);
    assert.equal(await ownExit, 7, "the runtime still got its own child's exit code");
    assert.deepEqual(
      childrenOf(process.pid).filter((c) => c.state === "Z"),
      [],
      "no zombies left",
    );
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0);
  });
});
