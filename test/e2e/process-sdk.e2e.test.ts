import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { RUNTIMES, createTestUser, eventually, isRoot, removeTestUser, startDaemon } from "./harness.ts";

const TEST_USER = "envd-sdk-user";
const TEST_GROUP = "envd-sdk-extra";


describe("Process service through the e2b SDK", () => {
  before(() => {
    if (!isRoot) return;
    removeTestUser(TEST_USER);
    try {
      execFileSync("groupdel", [TEST_GROUP], { stdio: "ignore" });
    } catch {}
    execFileSync("groupadd", [TEST_GROUP]);
    createTestUser(TEST_USER, ["-m", "-d", `/home/${TEST_USER}-dir`, "-s", "/bin/sh", "-G", TEST_GROUP]);
  });
  after(() => {
    if (!isRoot) return;
    removeTestUser(TEST_USER);
    try {
      execFileSync("groupdel", [TEST_GROUP], { stdio: "ignore" });
    } catch {}
  });

  for (const runtime of RUNTIMES) {
    describe(`[${runtime}]`, () => {
      test("commands.run in the foreground and in the background; list, connect and kill", async () => {
        await using envd = await startDaemon({ runtime });
        const sbx = await envd.sandbox();
        const fg = await sbx.commands.run("echo out; echo err >&2");
        assert.deepEqual({ exitCode: fg.exitCode, stdout: fg.stdout, stderr: fg.stderr }, { exitCode: 0, stdout: "out\n", stderr: "err\n" });

        const lines: string[] = [];
        const bg = await sbx.commands.run("echo begin; sleep 30", { background: true, onStdout: (d) => void lines.push(d) });
        assert.ok(bg.pid > 0);
        await eventually(() => lines.join("").includes("begin"), "background output");
        const listed = await sbx.commands.list();
        assert.ok(listed.some((p) => p.pid === bg.pid && p.cmd === "/bin/bash"));

        const seen: string[] = [];
        const attached = await sbx.commands.connect(bg.pid, { onStdout: (d) => void seen.push(d) });
        // a reconnect first receives what the process printed before
        await eventually(() => seen.join("").includes("begin"), "replayed output on connect");
        assert.equal(await sbx.commands.kill(bg.pid), true);
        await assert.rejects(attached.wait(), /signal: killed/);
        assert.equal(await sbx.commands.kill(bg.pid), false);
        await eventually(async () => !(await sbx.commands.list()).some((p) => p.pid === bg.pid), "killed process leaves the list");
      });

      test("sendStdin and closeStdin through the SDK", async () => {
        await using envd = await startDaemon({ runtime });
        const sbx = await envd.sandbox();
        const h = await sbx.commands.run("cat", { background: true, stdin: true });
        await sbx.commands.sendStdin(h.pid, "line one\n");
        await h.sendStdin("line two\n");
        await h.closeStdin();
        const r = await h.wait();
        assert.equal(r.stdout, "line one\nline two\n");
        assert.equal(r.exitCode, 0);
      });

      test("pty.create, sendInput, resize and kill", async () => {
        await using envd = await startDaemon({ runtime });
        const sbx = await envd.sandbox();
        const chunks: Buffer[] = [];
        const text = () => Buffer.concat(chunks).toString();
        const pty = await sbx.pty.create({ cols: 100, rows: 30, onData: (d) => void chunks.push(Buffer.from(d)), envs: { PS1: "$ " } });
        await sbx.pty.sendInput(pty.pid, new TextEncoder().encode("stty size; echo $TERM\n"));
        await eventually(() => text().includes("30 100") && text().includes("xterm-256color"), "initial size and TERM");
        await sbx.pty.resize(pty.pid, { cols: 132, rows: 50 });
        await sbx.pty.sendInput(pty.pid, new TextEncoder().encode("stty size\n"));
        await eventually(() => text().includes("50 132"), "resized");
        assert.equal(await sbx.pty.kill(pty.pid), true);
        const end = await pty.wait().catch((err: Error) => err);
        assert.match(String((end as Error).message ?? end), /signal: killed/);
      });

      test("commands run as a non-root user with the user's ids, groups and environment from the user database", { skip: isRoot ? false : "needs root to create a user" }, async () => {
        await using envd = await startDaemon({ runtime });
        const sbx = await envd.sandbox();
        const r = await sbx.commands.run('id -un; id -u; id -Gn; echo "$HOME|$USER|$LOGNAME|$SHELL"; pwd; echo "$PATH"', { user: TEST_USER as never });
        const [name, uid, groups, env, pwd, path] = r.stdout.trim().split("\n");
        assert.equal(name, TEST_USER);
        assert.equal(uid, execFileSync("id", ["-u", TEST_USER]).toString().trim());
        assert.ok(groups?.split(" ").includes(TEST_GROUP), `supplementary group in: ${groups}`);
        assert.equal(env, `/home/${TEST_USER}-dir|${TEST_USER}|${TEST_USER}|/bin/sh`);
        assert.equal(pwd, `/home/${TEST_USER}-dir`);
        assert.ok(path && path.length > 0);
        const pty = await sbx.pty.create({ cols: 80, rows: 24, user: TEST_USER as never, onData: () => {} });
        const procs = await sbx.commands.list();
        assert.ok(procs.some((p) => p.pid === pty.pid));
        // The pid is the launch wrapper's until it execs setpriv and the shell: under load `ps` can
        // still see it as root for a moment, so wait for the switch (it must happen, and stay).
        const owner = () => execFileSync("ps", ["-o", "user=", "-p", String(pty.pid)]).toString().trim();
        await eventually(() => owner() === TEST_USER, `the PTY's process to run as ${TEST_USER} (now ${owner()})`);
        await sbx.pty.kill(pty.pid);
        // a command as the user cannot read root's files
        await assert.rejects(sbx.commands.run("cat /root/.bashrc /etc/shadow", { user: TEST_USER as never }), /exit status 1/);
      });

      test("commands.run with timeoutMs ends the command and reports the deadline", async () => {
        await using envd = await startDaemon({ runtime });
        const sbx = await envd.sandbox();
        const started = Date.now();
        await assert.rejects(sbx.commands.run("sleep 30", { timeoutMs: 1000 }));
        assert.ok(Date.now() - started < 25_000);
        await eventually(async () => (await sbx.commands.list()).length === 0, "timed-out command is gone");
      });
    });
  }
});
