/**
 * A throwaway login user for the run, so that our daemon and sshd run the same commands as the
 * same ordinary user with Debian's default dotfiles (the root account of a development machine
 * often has a slow ~/.bashrc, and `commands.run` starts a login shell).
 */
import { spawnSync } from "node:child_process";

export interface BenchUser extends Disposable {
  name: string;
  home: string;
  uid: number;
  gid: number;
}

const NAME = "envd-bench";

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim()}`);
}

export function createBenchUser(): BenchUser {
  if (process.getuid?.() !== 0) throw new Error("the benchmark needs root (to create its user and run sshd)");
  if (spawnSync("id", [NAME], { stdio: "ignore" }).status === 0) spawnSync("userdel", ["-r", NAME], { stdio: "ignore" });
  const home = `/home/${NAME}`;
  run("useradd", ["-m", "-d", home, "-s", "/bin/bash", NAME]);
  // "*" instead of useradd's "!": sshd without PAM refuses key logins to locked accounts.
  run("usermod", ["-p", "*", NAME]);
  const id = (flag: string) => Number(spawnSync("id", [flag, NAME], { encoding: "utf8" }).stdout.trim());
  return {
    name: NAME,
    home,
    uid: id("-u"),
    gid: id("-g"),
    [Symbol.dispose]: removeBenchUser,
  };
}

/** Kills whatever still runs as the bench user and deletes it with its home. Idempotent. */
export function removeBenchUser(): void {
  spawnSync("pkill", ["-KILL", "-u", NAME], { stdio: "ignore" });
  spawnSync("userdel", ["-r", NAME], { stdio: "ignore" });
}
