import assert from "node:assert/strict";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ENVD_VERSION } from "../../src/version.ts";
import { getEnvs, postInit, recorder, sh, tempDir, tempUser } from "./control-fakes.ts";
import { isRoot, RUNTIMES, startDaemon } from "./harness.ts";

const NS_PER_MS = 1_000_000n;

/** RFC 3339 with nanoseconds, as the E2B orchestrator sends it. */
function rfc3339(ns: bigint): string {
  const ms = ns / NS_PER_MS;
  const iso = new Date(Number(ms)).toISOString(); // …T12:34:56.789Z
  return `${iso.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, "0")}Z`;
}
const nowNs = () => BigInt(Date.now()) * NS_PER_MS;

const PEM = (n: string) => `-----BEGIN CERTIFICATE-----\nMIIB${n}\n-----END CERTIFICATE-----\n`;

for (const runtime of RUNTIMES) {
  describe(`POST /init [${runtime}]`, () => {
    test("no body, {} and null answer 204 with X-Envd-Version and Cache-Control: no-store", async () => {
      await using envd = await startDaemon({ runtime });
      for (const body of [undefined, "{}", "null", ""]) {
        const res = await postInit(envd, body);
        assert.equal(res.status, 204, String(body));
        assert.equal(res.headers.get("x-envd-version"), ENVD_VERSION);
        assert.equal(res.headers.get("cache-control"), "no-store");
        assert.equal(await res.text(), "");
      }
      // Errors carry the headers too.
      const bad = await postInit(envd, "{");
      assert.equal(bad.status, 400);
      assert.equal(bad.headers.get("x-envd-version"), ENVD_VERSION);
      assert.equal(bad.headers.get("cache-control"), "no-store");
      assert.deepEqual(await getEnvs(envd), { E2B_SANDBOX: "false" });
    });

    test("envVars replace the previous set, cannot set internal names, and reach every new process", async () => {
      await using envd = await startDaemon({ runtime });
      assert.equal((await postInit(envd, { envVars: { A: "1", SHARED: "first" } })).status, 204);
      assert.deepEqual(await getEnvs(envd), { A: "1", SHARED: "first", E2B_SANDBOX: "false" });
      const res = await postInit(envd, { envVars: { B: "2", SHARED: "second", E2B_SANDBOX: "hijack", E2B_SANDBOX_ID: "x", E2B_EVENTS_ADDRESS: "y" } });
      assert.equal(res.status, 204);
      assert.deepEqual(await getEnvs(envd), { B: "2", SHARED: "second", E2B_SANDBOX: "false" });
      const out = await sh(envd.process, 'echo "A=${A-unset} B=$B SHARED=$SHARED SANDBOX=$E2B_SANDBOX ID=${E2B_SANDBOX_ID-unset}"');
      assert.equal(out, "A=unset B=2 SHARED=second SANDBOX=false ID=unset\n");
      // The request's own variables win over /init's.
      assert.equal(await sh(envd.process, "echo $B", { envs: { B: "request" } }), "request\n");
      // An /init without envVars keeps them; an empty object clears them.
      assert.equal((await postInit(envd, {})).status, 204);
      assert.equal((await getEnvs(envd)).B, "2");
      assert.equal((await postInit(envd, { envVars: {} })).status, 204);
      assert.deepEqual(await getEnvs(envd), { E2B_SANDBOX: "false" });
    });

    test("defaultUser and defaultWorkdir apply to later processes and file operations that name none", { skip: !isRoot && "needs root (useradd)" }, async () => {
      await using envd = await startDaemon({ runtime });
      using user = tempUser();
      const workdir = tempDir("workdir");
      assert.equal((await postInit(envd, { defaultUser: user.name, defaultWorkdir: workdir })).status, 204);
      assert.equal(await sh(envd.process, 'id -un; pwd; echo "$HOME $USER"'), `${user.name}\n${workdir}\n${user.home} ${user.name}\n`);
      // A request naming its own user or cwd keeps them.
      const asRoot = { Authorization: `Basic ${Buffer.from("root:").toString("base64")}` };
      assert.equal(await sh(envd.process, "id -un; pwd", {}, asRoot), `root\n${workdir}\n`);
      assert.equal(await sh(envd.process, "pwd", { cwd: "/tmp" }), "/tmp\n");
      // Filesystem RPCs act as the default user: a relative path is under their home, owned by them.
      await envd.filesystem.makeDir({ path: "made-by-default" });
      assert.equal(statSync(join(user.home, "made-by-default")).uid, user.uid);
      const info = await envd.filesystem.stat({ path: "made-by-default" });
      assert.equal(info.entry?.owner, user.name);
      // /files without a username writes as the default user.
      const up = await envd.fetch("/files?path=uploaded.txt", {
        method: "POST",
        headers: { "Content-Type": "application/octet-stream" },
        body: "hello",
      });
      assert.equal(up.status, 200, await up.clone().text());
      assert.equal(statSync(join(user.home, "uploaded.txt")).uid, user.uid);
    });

    test("the e2b SDK sees the env vars, default user and workdir set by /init", { skip: !isRoot && "needs root (useradd)" }, async () => {
      await using envd = await startDaemon({ runtime });
      using user = tempUser();
      const workdir = tempDir("sdk-workdir");
      const res = await postInit(envd, { envVars: { VAR: "from-init" }, defaultUser: user.name, defaultWorkdir: workdir });
      assert.equal(res.status, 204);
      const sbx = await envd.sandbox();
      const r = await sbx.commands.run("echo $VAR; whoami; pwd");
      assert.equal(r.stdout, `from-init\n${user.name}\n${workdir}\n`);
      await sbx.files.write("sdk-note.txt", "hi");
      assert.equal(statSync(join(user.home, "sdk-note.txt")).uid, user.uid);
      assert.equal((await sbx.files.getInfo("sdk-note.txt")).owner, user.name);
    });

    test("bad input gets a 4xx JSON error and changes nothing", async () => {
      await using envd = await startDaemon({ runtime });
      const workdir = tempDir("keep");
      const aFile = join(workdir, "file");
      writeFileSync(aFile, "");
      assert.equal((await postInit(envd, { envVars: { KEEP: "1" }, defaultWorkdir: workdir })).status, 204);
      const before = await getEnvs(envd);
      const cases: [unknown, number, RegExp][] = [
        ["{", 400, /invalid JSON body/],
        ["[1]", 400, /JSON object/],
        [{ envVars: ["A"] }, 400, /envVars must be an object/],
        [{ envVars: { A: 1 } }, 400, /envVars.A must be a string/],
        [{ accessToken: 42 }, 400, /accessToken must be a string/],
        [{ accessToken: "" }, 400, /accessToken is not a valid token/],
        [{ timestamp: "last tuesday" }, 400, /RFC 3339/],
        [{ timestamp: true }, 400, /RFC 3339 string or seconds since the epoch/],
        [{ defaultUser: 7 }, 400, /defaultUser must be a string/],
        [{ envVars: { NEW: "x" }, defaultUser: "no-such-user-e2e" }, 400, /invalid username: 'no-such-user-e2e'/],
        [{ envVars: { NEW: "x" }, defaultWorkdir: "/no/such/dir" }, 400, /not an existing directory/],
        [{ envVars: { NEW: "x" }, defaultWorkdir: aFile }, 400, /not an existing directory/],
        [{ defaultWorkdir: "relative" }, 400, /absolute path/],
        [{ hyperloopIP: "999.1.1.1" }, 400, /not an IP address/],
        [{ caBundle: "not a certificate" }, 400, /PEM/],
        [{ volumeMounts: [{ nfs_target: "--bind:/x", path: "/mnt/x" }] }, 400, /host:\/export/],
        [{ volumeMounts: [{ nfs_target: "h:/x" }] }, 400, /absolute path/],
        [{ envVars: { NEW: "x" }, lifecycleID: 5 }, 400, /lifecycleID must be a string/],
      ];
      for (const [body, status, message] of cases) {
        const res = await postInit(envd, body);
        assert.equal(res.status, status, JSON.stringify(body));
        assert.match(res.headers.get("content-type") ?? "", /application\/json/);
        const json = (await res.json()) as { code: number; message: string };
        assert.equal(json.code, status);
        assert.match(json.message, message, JSON.stringify(body));
      }
      // Over 4 MiB: 413, whether or not Content-Length announces it.
      const big = JSON.stringify({ envVars: { BIG: "x".repeat(5 << 20) } });
      const res = await postInit(envd, big);
      assert.equal(res.status, 413);
      assert.equal(((await res.json()) as { code: number }).code, 413);
      const chunked = await envd.fetch("/init", {
        method: "POST",
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode(big));
            c.close();
          },
        }),
        duplex: "half",
      } as RequestInit);
      assert.equal(chunked.status, 413);
      // Nothing changed: same variables, same user and workdir.
      assert.deepEqual(await getEnvs(envd), before);
      assert.equal(await sh(envd.process, "id -un; pwd; echo ${NEW-unset}"), `root\n${workdir}\nunset\n`);
    });

    test("timestamps: an older /init is ignored, the same one is applied again, a newer one applies", async () => {
      await using envd = await startDaemon({ runtime });
      const t0 = nowNs();
      const set = async (ts: bigint | undefined, v: string) => {
        const res = await postInit(envd, { envVars: { V: v }, ...(ts !== undefined ? { timestamp: rfc3339(ts) } : {}) });
        assert.equal(res.status, 204);
        return (await getEnvs(envd)).V;
      };
      assert.equal(await set(t0, "t0"), "t0");
      assert.equal(await set(t0 - 1n, "older by 1 ns"), "t0");
      assert.equal(await set(t0, "same"), "same");
      assert.equal(await set(t0 + 1_000_000_000n, "newer"), "newer");
      assert.equal(await set(t0, "old again"), "newer");
      assert.equal(await set(undefined, "no timestamp"), "no timestamp");
      // An ignored /init does not change the token either.
      assert.equal((await postInit(envd, { accessToken: "tok", timestamp: rfc3339(t0) })).status, 204);
      assert.equal((await envd.fetch("/envs")).status, 200);
    });

    test("the clock is set only when the guest is over 50 ms behind or 5 s ahead, to the host's time", async () => {
      const dir = tempDir("clock");
      const clock = recorder(dir, "set-clock");
      {
        await using envd = await startDaemon({ runtime, env: { ENVD_CLOCK_COMMAND: clock.path } });
        assert.equal((await postInit(envd, { timestamp: rfc3339(nowNs()) })).status, 204);
        assert.deepEqual(clock.calls(), []);
        const hour = 3_600_000_000_000n;
        const target = nowNs() + hour;
        assert.equal((await postInit(envd, { timestamp: rfc3339(target) })).status, 204);
        const calls = clock.calls();
        assert.equal(calls.length, 1);
        const m = /^@(\d+)\.(\d{9})$/.exec(calls[0] as string);
        assert.ok(m, String(calls[0]));
        const setNs = BigInt(m[1] as string) * 1_000_000_000n + BigInt(m[2] as string);
        // The host's time plus the moments spent handling the request: never earlier, and close.
        assert.ok(setNs >= target, `${setNs} < ${target}`);
        assert.ok(setNs - target < 30_000_000_000n, `${setNs - target} ns late`);
      }
      {
        await using envd = await startDaemon({ runtime, env: { ENVD_CLOCK_COMMAND: clock.path } });
        // Guest 10 s ahead of the host → set; then 1 s ahead → left alone.
        assert.equal((await postInit(envd, { timestamp: rfc3339(nowNs() - 10_000_000_000n) })).status, 204);
        assert.equal(clock.calls().length, 2);
        assert.equal((await postInit(envd, { timestamp: rfc3339(nowNs() - 1_000_000_000n) })).status, 204);
        assert.equal(clock.calls().length, 2);
      }
    });

    test("caBundle is appended once, replaces the previous one, and is persisted", async () => {
      const dir = tempDir("ca");
      const bundle = join(dir, "certs", "ca-certificates.crt");
      const cert = join(dir, "share", "e2b-ca.crt");
      mkdirSync(join(dir, "certs"));
      writeFileSync(bundle, PEM("SYSTEM"));
      await using envd = await startDaemon({ runtime, env: { ENVD_CA_BUNDLE: bundle, ENVD_CA_CERT: cert } });
      assert.equal((await postInit(envd, { caBundle: PEM("ONE") })).status, 204);
      assert.equal((await postInit(envd, { caBundle: PEM("ONE") })).status, 204);
      assert.equal(readFileSync(bundle, "utf8"), PEM("SYSTEM") + PEM("ONE"));
      assert.equal(readFileSync(cert, "utf8"), PEM("ONE"));
      assert.equal((await postInit(envd, { caBundle: PEM("TWO") })).status, 204);
      assert.equal(readFileSync(bundle, "utf8"), PEM("SYSTEM") + PEM("TWO"));
      assert.equal(readFileSync(cert, "utf8"), PEM("TWO"));
      assert.equal(statSync(bundle).mode & 0o777, 0o644);
    });

    test("hyperloopIP pins events.e2b.local in the hosts file and sets E2B_EVENTS_ADDRESS", async () => {
      const dir = tempDir("hosts");
      const hosts = join(dir, "hosts");
      writeFileSync(hosts, "127.0.0.1\tlocalhost\n");
      await using envd = await startDaemon({ runtime, env: { ENVD_HOSTS_FILE: hosts } });
      assert.equal((await postInit(envd, { hyperloopIP: "10.11.12.13" })).status, 204);
      assert.equal(readFileSync(hosts, "utf8"), "127.0.0.1\tlocalhost\n10.11.12.13\tevents.e2b.local\n");
      assert.equal((await getEnvs(envd)).E2B_EVENTS_ADDRESS, "http://10.11.12.13");
      assert.equal((await postInit(envd, { hyperloopIP: "10.11.12.14", envVars: { E2B_EVENTS_ADDRESS: "nope" } })).status, 204);
      assert.equal(readFileSync(hosts, "utf8"), "127.0.0.1\tlocalhost\n10.11.12.14\tevents.e2b.local\n");
      assert.equal(await sh(envd.process, "echo $E2B_EVENTS_ADDRESS"), "http://10.11.12.14\n");
      assert.equal((await postInit(envd, { hyperloopIP: "fd00::7" })).status, 204);
      assert.match(readFileSync(hosts, "utf8"), /fd00::7\tevents\.e2b\.local\n$/);
      assert.equal((await getEnvs(envd)).E2B_EVENTS_ADDRESS, "http://[fd00::7]");
    });

    test("volumeMounts run E2B's NFS mount once per path and lifecycle; a failed mount is a 400 that changes nothing", { skip: !isRoot && "needs root" }, async () => {
      const dir = tempDir("mounts");
      const bin = join(dir, "bin");
      mkdirSync(bin);
      const failFlag = join(dir, "fail");
      const mount = recorder(bin, "mount", `[ -e '${failFlag}' ] && { echo 'mount.nfs: access denied by server' >&2; exit 32; }`);
      const umount = recorder(bin, "umount");
      const target = join(dir, "mnt", "data");
      await using envd = await startDaemon({ runtime, env: { PATH: `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}` } });
      const body = { volumeMounts: [{ nfs_target: "10.0.0.2:/vol-1", path: `${target}/` }], lifecycleID: "life-1", envVars: { M: "1" } };
      assert.equal((await postInit(envd, body)).status, 204);
      assert.deepEqual(mount.calls(), [
        `-v -t nfs -o fg,hard,sync,rsize=1048576,wsize=1048576,mountproto=tcp,mountport=2049,proto=tcp,port=2049,nfsvers=3,noacl,noac,lookupcache=none 10.0.0.2:/vol-1 ${target}`,
      ]);
      assert.ok(statSync(target).isDirectory());
      assert.equal((await postInit(envd, body)).status, 204); // same lifecycle: not mounted again
      assert.equal(mount.calls().length, 1);
      assert.deepEqual(umount.calls(), []); // nothing was really mounted there
      // A new lifecycle mounts again; a failing mount is a 400 with mount's words and no state change.
      writeFileSync(failFlag, "");
      const res = await postInit(envd, { ...body, lifecycleID: "life-2", envVars: { M: "2" } });
      assert.equal(res.status, 400);
      assert.match(((await res.json()) as { message: string }).message, /mount 10\.0\.0\.2:\/vol-1 on .* failed: mount\.nfs: access denied by server/);
      assert.equal((await getEnvs(envd)).M, "1");
      assert.equal(mount.calls().length, 2);
    });

    test("concurrent /init calls are serialised: identical ones all succeed, and the newest timestamp wins", async () => {
      await using envd = await startDaemon({ runtime });
      const same = { envVars: { SAME: "1" }, accessToken: "tok-1" };
      const results = await Promise.all(Array.from({ length: 20 }, () => postInit(envd, same, { "X-Access-Token": "tok-1" })));
      assert.deepEqual(
        results.map((r) => r.status),
        Array(20).fill(204),
      );
      const t0 = nowNs();
      const order = [5, 0, 9, 3, 7, 1, 8, 2, 6, 4];
      const racing = await Promise.all(
        order.map((i) => postInit(envd, { envVars: { N: String(i) }, accessToken: "tok-1", timestamp: rfc3339(t0 + BigInt(i) * 1_000_000n) })),
      );
      assert.deepEqual(
        racing.map((r) => r.status),
        Array(10).fill(204),
      );
      assert.deepEqual(await getEnvs(envd, "tok-1"), { N: "9", E2B_SANDBOX: "false" });
    });
  });
}
