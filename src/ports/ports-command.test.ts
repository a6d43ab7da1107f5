import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { TCP_LISTEN, type TcpSocket } from "./proc-net-tcp.ts";
import { portUrl, reachableListeningPorts, runPortsCommand } from "./ports-command.ts";

const dir = mkdtempSync(join(tmpdir(), "envd-ports-cmd-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const sock = (address: string, port: number, state = TCP_LISTEN): TcpSocket => ({
  family: address.includes(":") ? 6 : 4,
  address,
  port,
  state,
  uid: 0,
  inode: 1,
});
const SOCKETS = [
  sock("0.0.0.0", 8000),
  sock("::", 8000),
  sock("127.0.0.1", 5173),
  sock("::1", 3000),
  sock("10.0.2.15", 9000), // a specific address the proxy cannot reach
  sock("0.0.0.0", 49983), // envd itself
  sock("127.0.0.1", 4000, 0x01), // an established connection, not a listener
  sock("::ffff:127.0.0.1", 4444),
];

function run(argv: string[], env: NodeJS.ProcessEnv, sockets = SOCKETS) {
  let out = "";
  let err = "";
  const code = runPortsCommand(argv, env, { stdout: (t) => (out += t), stderr: (t) => (err += t), readTcp: () => sockets });
  return { code, out, err };
}

const inside = (extra: Record<string, string> = {}) => ({ ENVD_RUN_DIR: join(dir, "empty"), WRENN_SANDBOX: "true", ...extra });

describe("envd ports", () => {
  test("reachable = LISTEN on wildcard or loopback, not envd's own port; sorted, once each", () => {
    assert.deepEqual(reachableListeningPorts(SOCKETS, 49983), [3000, 4444, 5173, 8000]);
    assert.equal(portUrl(8000, "cl-abcd1234", "wrenn.dev"), "https://8000-cl-abcd1234.wrenn.dev");
    assert.equal(portUrl(5173, undefined, "wrenn.dev"), "https://5173-<sandbox-id>.wrenn.dev");
  });

  test("a table with the sandbox id and domain from the environment", () => {
    const r = run([], inside({ WRENN_SANDBOX_ID: " sbx-1 ", WRENN_PROXY_DOMAIN: "example.dev" }));
    assert.equal(r.code, 0);
    assert.equal(
      r.out,
      "PORT   URL\n3000   https://3000-sbx-1.example.dev\n4444   https://4444-sbx-1.example.dev\n5173   https://5173-sbx-1.example.dev\n8000   https://8000-sbx-1.example.dev\n",
    );
  });

  test("--json, --domain overrides; identity from the run files when the variables are unset", () => {
    const runDir = join(dir, "run");
    mkdirSync(runDir, { recursive: true });
    writeFileSync(join(runDir, ".WRENN_SANDBOX"), "true");
    writeFileSync(join(runDir, ".WRENN_SANDBOX_ID"), "sbx-file\n");
    writeFileSync(join(runDir, ".WRENN_PROXY_DOMAIN"), "file.dev\n");
    const r = run(["--json", "--domain", "cli.dev"], { ENVD_RUN_DIR: runDir }, [sock("0.0.0.0", 8080)]);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.out), [{ port: 8080, url: "https://8080-sbx-file.cli.dev" }]);
    const fromFile = run(["--json"], { ENVD_RUN_DIR: runDir }, [sock("0.0.0.0", 8080)]);
    assert.deepEqual(JSON.parse(fromFile.out), [{ port: 8080, url: "https://8080-sbx-file.file.dev" }]);
    assert.deepEqual(JSON.parse(run(["--domain=eq.dev", "--json"], { ENVD_RUN_DIR: runDir }, [sock("::", 1)]).out), [
      { port: 1, url: "https://1-sbx-file.eq.dev" },
    ]);
  });

  test("no ports: a sentence (table) or [] (JSON); default domain wrenn.dev", () => {
    assert.equal(run([], inside(), []).out, "No open ports.\n");
    assert.equal(run(["--json"], inside(), []).out, "[]\n");
    assert.match(run([], inside(), [sock("0.0.0.0", 1)]).out, /https:\/\/1-<sandbox-id>\.wrenn\.dev/);
  });

  test("refused outside a sandbox (no WRENN_SANDBOX=true, no marker file)", () => {
    for (const env of [{ ENVD_RUN_DIR: join(dir, "empty") }, { ENVD_RUN_DIR: join(dir, "empty"), WRENN_SANDBOX: "false" }]) {
      const r = run([], env);
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.equal(r.err, "envd ports: not running inside a wrenn sandbox\n");
    }
  });

  test("bad arguments: exit 2 with the usage", () => {
    for (const argv of [["--bogus"], ["--domain"], ["extra"], ["--json=1"]]) {
      const r = run(argv, inside());
      assert.equal(r.code, 2, argv.join(" "));
      assert.match(r.err, /Usage: envd ports/);
    }
    assert.match(run(["--help"], {}).out, /Usage: envd ports/);
  });
});
