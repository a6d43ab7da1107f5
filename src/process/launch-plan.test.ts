import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { childEnv, planLaunch, shellQuote } from "./launch-plan.ts";

const user = { name: "u", uid: 1000, gid: 1000, home: "/home/u", shell: "/bin/zsh", groups: [27, 44] };
const base = { cmd: "/bin/echo", args: ["a b", "$X", "'"], user, cwd: "/tmp", defaultEnv: {}, envs: {}, cgroupProcs: undefined, daemonPath: "/usr/bin:/bin" };
const tools = { setpriv: "/usr/bin/setpriv", nice: "/usr/bin/nice", ionice: "/usr/bin/ionice", daemonNice: 0 };

test("child environment: passwd values, then defaults, then the request's own (last wins)", () => {
  const env = childEnv({ user, daemonPath: "/p", defaultEnv: { A: "default", HOME: "/x" }, envs: { A: "request" } });
  assert.deepEqual(env, { PATH: "/p", HOME: "/x", USER: "u", LOGNAME: "u", SHELL: "/bin/zsh", A: "request" });
  assert.match(childEnv({ user, daemonPath: "", defaultEnv: {}, envs: {} }).PATH, /\/usr\/bin/);
});

test("the wrapper drops to uid, gid and supplementary groups with setpriv and passes argv unchanged", () => {
  const plan = planLaunch({ ...base, cgroupProcs: "/sys/fs/cgroup/user/cgroup.procs" }, tools);
  assert.deepEqual(plan.argv.slice(0, 2), ["/bin/sh", "-c"]);
  assert.deepEqual(plan.argv.slice(3), ["--", "/bin/echo", "a b", "$X", "'"]);
  const script = plan.argv[2] as string;
  assert.match(script, /echo \$\$ > '\/sys\/fs\/cgroup\/user\/cgroup.procs'/);
  assert.match(script, /oom_score_adj/);
  assert.match(script, /--reuid=1000 --regid=1000 --groups=27,44 --/);
  assert.equal(plan.uid, undefined);
  // The script really runs and passes argv through untouched (without dropping privileges here).
  const rootPlan = planLaunch({ ...base, user: { ...user, uid: 0, gid: 0, groups: [] } }, { ...tools, ionice: undefined });
  const out = execFileSync(rootPlan.argv[0], rootPlan.argv.slice(1)).toString();
  assert.equal(out, "a b $X '\n");
});

test("without setpriv the spawn itself changes uid and gid", () => {
  const plan = planLaunch(base, { ...tools, setpriv: undefined });
  assert.equal(plan.uid, 1000);
  assert.equal(plan.gid, 1000);
  assert.doesNotMatch(plan.argv[2] as string, /setpriv/);
});

test("nice brings a reniced daemon's children back to 0, before privileges are dropped", () => {
  const plan = planLaunch(base, { ...tools, daemonNice: -5 });
  const script = plan.argv[2] as string;
  assert.ok(script.indexOf("nice' -n 5") < script.indexOf("setpriv"));
});

test("shellQuote survives single quotes", () => {
  assert.equal(execFileSync("/bin/sh", ["-c", `printf %s ${shellQuote("it's $HOME")}`]).toString(), "it's $HOME");
});
