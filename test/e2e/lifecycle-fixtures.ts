/**
 * Helpers for the VM-lifecycle suites: raw HTTP/1.1 connections whose fate we can watch, network
 * namespaces joined by a veth pair, a private cgroup v2 sub-root, and zombie counting.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { descendantsOf } from "./harness.ts";

/** A raw TCP connection to the daemon, keeping everything it received. */
export interface RawConn {
  socket: net.Socket;
  received(): string;
  closed: Promise<void>;
  isClosed(): boolean;
}

export function rawConnect(port: number, host = "127.0.0.1"): Promise<RawConn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host }, () => {
      socket.off("error", reject);
      const chunks: Buffer[] = [];
      let isClosed = false;
      socket.on("data", (d: Buffer) => chunks.push(d));
      socket.on("error", () => {});
      const closed = new Promise<void>((r) =>
        socket.once("close", () => {
          isClosed = true;
          r();
        }),
      );
      resolve({ socket, received: () => Buffer.concat(chunks).toString("latin1"), closed, isClosed: () => isClosed });
    });
    socket.once("error", reject);
  });
}

/** Sends GET /health with keep-alive on a raw connection and waits for the full answer. */
export async function rawHealth(c: RawConn): Promise<string> {
  const before = c.received().length;
  c.socket.write("GET /health HTTP/1.1\r\nHost: envd\r\nConnection: keep-alive\r\n\r\n");
  for (let i = 0; i < 500; i++) {
    const text = c.received().slice(before);
    if (/\r\n\r\n/.test(text)) return text;
    if (c.isClosed()) throw new Error(`closed before an answer: ${text}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("no answer to GET /health");
}

/** Starts a Connect JSON server stream (Process.Start) on a raw connection; output keeps arriving on it. */
export function rawStartStream(c: RawConn, cmd: string, args: string[]): void {
  const json = Buffer.from(JSON.stringify({ process: { cmd, args } }));
  const envelope = Buffer.alloc(5 + json.length);
  envelope.writeUInt8(0, 0);
  envelope.writeUInt32BE(json.length, 1);
  json.copy(envelope, 5);
  c.socket.write(
    "POST /process.Process/Start HTTP/1.1\r\nHost: envd\r\nContent-Type: application/connect+json\r\n" +
      `Connect-Protocol-Version: 1\r\nContent-Length: ${envelope.length}\r\n\r\n`,
  );
  c.socket.write(envelope);
}

/** Runs `ip …` (throws with its stderr). */
export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface NetnsPair extends Disposable {
  ns: string;
  /** IPv4 / IPv6 addresses inside the namespace (the "guest") and on the host side. */
  guest4: string;
  host4: string;
  guest6: string;
  host6: string;
}

/** The first line of what a failed command or call said (its stderr when it has one). */
function reasonOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { stderr?: string | Buffer };
  const said = String(e.stderr ?? "").trim() || (e.message ?? String(err));
  return said.split("\n")[0] as string;
}

/**
 * Why netns tests cannot run here, or undefined when they can: it does once what createNetns
 * does (a namespace, a veth pair with one end moved into it, loopback up inside) and removes it.
 */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (ip netns, veth)";
  const id = `p${process.pid % 100_000}`;
  const ns = `envd-probe-${id}`;
  const vh = `vh${id}`.slice(0, 15);
  const vg = `vg${id}`.slice(0, 15);
  try {
    ip("netns", "add", ns);
    ip("link", "add", vh, "type", "veth", "peer", "name", vg);
    ip("link", "set", vg, "netns", ns);
    ip("-n", ns, "link", "set", "lo", "up");
    return undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "iproute2 (ip) is not installed";
    return `cannot create a network namespace joined by a veth pair: ${reasonOf(err)}`;
  } finally {
    removeNetns(ns, vh);
  }
}

/**
 * A network namespace ("guest") joined to this one by a veth pair, with a private /30 and a ULA
 * /64; loopback up inside. Removed on dispose.
 */
export function createNetns(tag: string): NetnsPair {
  const n = 1 + Math.floor(Math.random() * 250);
  const m = Math.floor(Math.random() * 63) * 4;
  const id = `${tag}${process.pid % 1000}${n}`;
  const ns = `envd-${id}`;
  const vh = `vh${id}`.slice(0, 15);
  const vg = `vg${id}`.slice(0, 15);
  const hex = (n * 256 + m).toString(16);
  const net4 = `10.${200 + (n % 50)}.${n}.${m}`;
  const host4 = net4.replace(/\.\d+$/, `.${m + 1}`);
  const guest4 = net4.replace(/\.\d+$/, `.${m + 2}`);
  const host6 = `fd00:e2b:${hex}::1`;
  const guest6 = `fd00:e2b:${hex}::2`;
  ip("netns", "add", ns);
  try {
    ip("link", "add", vh, "type", "veth", "peer", "name", vg);
    ip("link", "set", vg, "netns", ns);
    ip("addr", "add", `${host4}/30`, "dev", vh);
    ip("-6", "addr", "add", `${host6}/64`, "dev", vh, "nodad");
    ip("link", "set", vh, "up");
    ip("-n", ns, "link", "set", "lo", "up");
    ip("-n", ns, "addr", "add", `${guest4}/30`, "dev", vg);
    ip("-n", ns, "-6", "addr", "add", `${guest6}/64`, "dev", vg, "nodad");
    ip("-n", ns, "link", "set", vg, "up");
  } catch (err) {
    removeNetns(ns, vh);
    throw err;
  }
  return { ns, guest4, host4, guest6, host6, [Symbol.dispose]: () => removeNetns(ns, vh) };
}

function removeNetns(ns: string, vh: string): void {
  try {
    ip("link", "del", vh);
  } catch {
    // gone with the namespace
  }
  try {
    ip("netns", "del", ns);
  } catch {
    // already gone
  }
}

/** Connects, writes `data`, half-closes and returns everything read until the peer closes. */
export function echoOnce(host: string, port: number, data: Buffer, opts: { slowReader?: boolean } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host, port }, () => s.end(data));
    s.on("data", (d: Buffer) => {
      chunks.push(d);
      if (!opts.slowReader) return;
      // A reader slower than the relay: the relay's side of this connection holds unsent bytes
      // when the guest's side closes.
      s.pause();
      setTimeout(() => s.resume(), 1);
    });
    s.once("error", reject);
    s.once("close", () => resolve(Buffer.concat(chunks)));
  });
}

/** Resolves "refused" / "open" for a TCP connect attempt. */
export function probe(host: string, port: number): Promise<"open" | "refused" | "error"> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(2_000, () => {
      s.destroy();
      resolve("error");
    });
    s.once("connect", () => {
      s.destroy();
      resolve("open");
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED" ? "refused" : "error"));
  });
}

/** The cgroup2 mount point of this machine, if any. */
export function cgroup2Mount(): string | undefined {
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const [, mountPoint, fstype] = line.split(" ");
    if (fstype === "cgroup2" && mountPoint) return mountPoint;
  }
  return undefined;
}

/**
 * Why cgroup tests cannot run here, or undefined when they can. It does once what the tests and
 * the daemon do under a test's sub-root: creates a throwaway cgroup under the mount, enables the
 * controllers it offers (of cpu, io, memory) in its subtree_control, creates a child, writes the
 * child's controller files (cpu.weight, memory.max where present) and cgroup.freeze (where
 * present), moves a shell into the child as the launch wrapper does, and removes it all.
 */
export function cgroupsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root to create cgroups";
  const mount = cgroup2Mount();
  if (!mount) return "no cgroup v2 hierarchy is mounted";
  const dir = join(mount, `envd-probe-${process.pid}-${Math.floor(Math.random() * 1e6)}`);
  try {
    mkdirSync(dir);
  } catch (err) {
    return `cannot create a cgroup under ${mount}: ${reasonOf(err)}`;
  }
  try {
    const offered = readFileSync(join(dir, "cgroup.controllers"), "utf8").trim().split(/\s+/);
    for (const c of ["cpu", "io", "memory"]) {
      if (offered.includes(c)) writeFileSync(join(dir, "cgroup.subtree_control"), `+${c}`);
    }
    const child = join(dir, "probe");
    mkdirSync(child);
    for (const [file, value] of [
      ["cpu.weight", "100"],
      ["memory.max", "max"],
      ["cgroup.freeze", "0"],
    ] as const) {
      if (existsSync(join(child, file))) writeFileSync(join(child, file), value);
    }
    execFileSync("sh", ["-c", 'echo $$ > "$1"', "sh", join(child, "cgroup.procs")], { stdio: ["ignore", "ignore", "pipe"] });
    return undefined;
  } catch (err) {
    return `cgroup v2 at ${mount} cannot be used as the tests need: ${reasonOf(err)}`;
  } finally {
    removeCgroupTree(dir);
  }
}

/** Removes a cgroup sub-tree bottom-up (it must hold no processes any more). */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(dir, entry.name));
  }
  try {
    rmdirSync(dir);
  } catch {
    // still busy: leave it (a later run cleans its own)
  }
}

/** The cgroup v2 path (relative to the mount) a process is in. */
export function cgroupOf(pid: number): string {
  return /^0::(.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, "utf8"))?.[1] ?? "";
}

/** Descendants of `pid` and their states (from /proc). */
export function descendantStates(pid: number): { pid: number; state: string; comm: string; ppid: number }[] {
  const out: { pid: number; state: string; comm: string; ppid: number }[] = [];
  for (const p of descendantsOf(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const rest = stat.slice(close + 2).split(" ");
      out.push({ pid: p, state: rest[0] ?? "?", comm: stat.slice(stat.indexOf("(") + 1, close), ppid: Number(rest[1]) });
    } catch {
      // gone
    }
  }
  return out;
}
