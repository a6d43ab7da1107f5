/**
 * The OpenSSH peer: Debian's sshd on a loopback port with a throwaway host key, config and
 * authorized key, and one kept client connection (ControlMaster) that `exec` reuses, as a user who
 * runs many commands over SSH would. Everything lives in one temporary directory and goes away on
 * disposal.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { descendantsOf } from "../../test/e2e/harness.ts";
import { freePort, sleep } from "./measure.ts";

export interface OpenSsh extends AsyncDisposable {
  /** pid of the listening sshd. */
  pid: number;
  port: number;
  /** sshd's version line, e.g. "OpenSSH_9.2p1 Debian-2+deb12u10". */
  version: string;
  /** argv prefix for `ssh` over the kept connection; append the remote command. */
  ssh: string[];
  /** argv prefix for `scp` over the kept connection; append `src dst` (remote side as `host:path`). */
  scp: string[];
  /** How the remote side is addressed in scp arguments. */
  host: string;
  /** pids of sshd's per-connection processes (for the memory a kept connection costs). */
  connectionPids(): number[];
}

const SSHD = "/usr/sbin/sshd";

/**
 * Installs Debian's OpenSSH server and client if they are missing (root with apt-get only, and
 * only when `install`). Returns why the peer cannot run, or undefined.
 */
export function ensureOpenSsh(log: (msg: string) => void, install: boolean): string | undefined {
  const have = () => existsSync(SSHD) && spawnSync("ssh", ["-V"], { stdio: "ignore" }).status === 0 && spawnSync("scp", ["-h"], { stdio: "ignore" }).status !== null;
  if (have()) return undefined;
  if (!install) return "OpenSSH is not installed (the smoke run does not install it)";
  if (process.getuid?.() !== 0) return "OpenSSH is not installed and installing it needs root";
  if (spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status !== 0) return "OpenSSH is not installed and apt-get is missing";
  log("installing openssh-server and openssh-client with apt-get");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  if (update.status !== 0) return "apt-get update failed";
  const installed = spawnSync("apt-get", ["install", "-y", "-qq", "openssh-server", "openssh-client"], { stdio: "inherit", env });
  if (installed.status !== 0 || !have()) return "apt-get install openssh-server openssh-client failed";
  return undefined;
}


/** Starts sshd as root on 127.0.0.1 and opens the kept connection as `user`. */
export async function startOpenSsh(user: string): Promise<OpenSsh> {
  const dir = mkdtempSync(join(tmpdir(), "envd-bench-ssh-"));
  // sshd reads authorized_keys with the user's privileges: let it through the directory.
  chmodSync(dir, 0o711);
  const key = join(dir, "id_ed25519");
  const hostKey = join(dir, "host_ed25519");
  const keygen = (path: string) => {
    const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  };
  keygen(key);
  keygen(hostKey);
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${key}.pub`), { mode: 0o644 });
  // sshd wants its privilege-separation directory.
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const port = await freePort();
  const config = join(dir, "sshd_config");
  writeFileSync(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "StrictModes no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      `AllowUsers ${user}`,
      "UsePAM no",
      "UseDNS no",
      "PrintMotd no",
      "PrintLastLog no",
      "X11Forwarding no",
      "Subsystem sftp /usr/lib/openssh/sftp-server",
      "LogLevel ERROR",
      "",
    ].join("\n"),
  );
  const version = spawnSync("ssh", ["-V"], { encoding: "utf8" }).stderr.trim();
  const sshd = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let sshdErr = "";
  sshd.stderr?.on("data", (d: Buffer) => (sshdErr += d.toString()));

  const control = join(dir, "ctl");
  const common = [
    "-F", "/dev/null",
    "-i", key,
    "-o", "IdentitiesOnly=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", `UserKnownHostsFile=${join(dir, "known_hosts")}`,
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", `ControlPath=${control}`,
  ];
  const host = `${user}@127.0.0.1`;
  let master: ChildProcess | undefined;
  const stop = async () => {
    if (master && master.exitCode === null) {
      spawnSync("ssh", [...common, "-p", String(port), "-O", "exit", host], { stdio: "ignore" });
      master.kill("SIGTERM");
    }
    if (sshd.exitCode === null) {
      const exited = new Promise((r) => sshd.once("exit", r));
      sshd.kill("SIGTERM");
      await Promise.race([exited, sleep(5_000)]);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Wait for sshd to listen, then open the master connection and wait until it answers.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (sshd.exitCode !== null) throw new Error(`sshd exited ${sshd.exitCode}: ${sshdErr}`);
      master = spawn("ssh", [...common, "-p", String(port), "-M", "-N", "-o", "ControlMaster=yes", host], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let masterErr = "";
      master.stderr?.on("data", (d: Buffer) => (masterErr += d.toString()));
      let up = false;
      for (let i = 0; i < 100 && master.exitCode === null; i++) {
        if (spawnSync("ssh", [...common, "-p", String(port), "-O", "check", host], { stdio: "ignore" }).status === 0) {
          up = true;
          break;
        }
        await sleep(20);
      }
      if (up) break;
      master.kill("SIGKILL");
      if (Date.now() > deadline) throw new Error(`ssh master connection failed: ${masterErr.trim()} ${sshdErr.trim()}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const listener = sshd.pid as number;
  return {
    pid: listener,
    port,
    version,
    host,
    ssh: ["ssh", ...common, "-o", "ControlMaster=no", "-p", String(port), host],
    scp: ["scp", ...common, "-o", "ControlMaster=no", "-q", "-P", String(port)],
    connectionPids: () => descendantsOf(listener),
    [Symbol.asyncDispose]: stop,
  };
}
