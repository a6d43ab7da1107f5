/**
 * Port forwarding: our in-process relay (src/ports/port-forwarder.ts, under Bun and Node 26)
 * against socat (what E2B and Wrenn run, one forked process per connection) and a direct
 * loopback connection as the floor.
 *
 *   node bench/port-forward.ts [--rounds 3] [--mib 512]
 *
 * Every party is its own process: the target server, the forwarder, and this client. Measures
 * bulk throughput (one connection, client → server), round-trip latency (1-byte ping-pong on one
 * connection) and connection setup (connect, one round trip, close). Medians over the rounds.
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const BIN = join(ROOT, "node_modules", ".bin");
const argv = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const ROUNDS = opt("rounds", 3);
const MIB = opt("mib", 512);
const PINGS = 5_000;
const CONNECTS = 500;

const TARGET = `
const net = require("net");
net.createServer((s) => {
  s.setNoDelay(true);
  let mode;
  s.on("data", (d) => {
    mode ??= d[0];
    if (mode === 0x50) s.write(d);          // 'P': echo (ping-pong, connect test)
  });
  s.on("end", () => s.end("done"));         // sink: answer once the client has sent everything
  s.on("error", () => {});
}).listen(+process.argv[1], "127.0.0.1", () => console.log("ready"));
`;

const FORWARDER = `
import { PortForwarder } from ${JSON.stringify(join(ROOT, "src/ports/port-forwarder.ts"))};
import { createLogger } from ${JSON.stringify(join(ROOT, "src/log.ts"))};
const port = Number(process.argv.at(-1));
const f = new PortForwarder({
  log: createLogger("error", () => {}),
  bindAddresses: ["127.0.0.3"],
  readSockets: async () => [{ family: 4, address: "127.0.0.1", port, state: 10, uid: 0, inode: 1 }],
  localAddresses: () => new Set(["127.0.0.3"]),
});
f.start();
const wait = setInterval(() => { if (f.list().length) { clearInterval(wait); console.log("ready"); } }, 5);
`;

function start(cmd: string, args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
    c.once("error", reject);
    c.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) resolve(c);
    });
  });
}

async function waitOpen(host: string, port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${host}:${port} never opened`);
}

function throughput(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(256 * 1024, 0x53); // 'S': sink
    const total = MIB * 1024 * 1024;
    let sent = 0;
    const t0 = performance.now();
    const s = net.connect({ host, port }, () => {
      const pump = () => {
        while (sent < total) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once("drain", pump);
        }
        s.end();
      };
      pump();
    });
    s.on("data", () => {});
    s.once("end", () => resolve((total / 1024 / 1024 / (performance.now() - t0)) * 1000));
    s.once("error", reject);
  });
}

function latency(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const times: number[] = [];
    const s = net.connect({ host, port, noDelay: true }, () => {
      let t = performance.now();
      s.write("P");
      s.on("data", () => {
        const now = performance.now();
        times.push(now - t);
        if (times.length === PINGS) {
          s.destroy();
          resolve(median(times) * 1000);
          return;
        }
        t = now;
        s.write("P");
      });
    });
    s.once("error", reject);
  });
}

async function connectRate(host: string, port: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < CONNECTS; i++) {
    await new Promise<void>((resolve, reject) => {
      const s = net.connect({ host, port, noDelay: true }, () => s.write("P"));
      s.once("data", () => {
        s.destroy();
        resolve();
      });
      s.once("error", reject);
    });
  }
  return (performance.now() - t0) / CONNECTS;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const target = await start(join(BIN, "node"), ["-e", TARGET, String(port)]);
  const parties: { name: string; host: string; proc?: ChildProcess }[] = [{ name: "direct (floor)", host: "127.0.0.1" }];
  for (const runtime of ["bun", "node"]) {
    const proc = await start(join(BIN, runtime), runtime === "node" ? ["--input-type=module", "-e", FORWARDER, "--", String(port)] : ["-e", FORWARDER, String(port)]);
    parties.push({ name: `in-process relay (${runtime})`, host: "127.0.0.3", proc });
    // One forwarder at a time on 127.0.0.3: measure, then stop it.
    await waitOpen("127.0.0.3", port);
    const r = await measure("127.0.0.3", port);
    report(`in-process relay (${runtime})`, r);
    proc.kill("SIGKILL");
    await new Promise((res) => proc.once("exit", res));
  }
  const direct = await measure("127.0.0.1", port);
  report("direct (floor)", direct);
  const socat = spawn("socat", [`TCP4-LISTEN:${port},bind=127.0.0.4,reuseaddr,fork`, `TCP4:127.0.0.1:${port}`], { stdio: "ignore" });
  await waitOpen("127.0.0.4", port);
  report("socat 1.7 (fork per connection)", await measure("127.0.0.4", port));
  socat.kill("SIGKILL");
  target.kill("SIGKILL");
  void parties;
}

async function measure(host: string, port: number) {
  const tp: number[] = [];
  const lat: number[] = [];
  const conn: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    tp.push(await throughput(host, port));
    lat.push(await latency(host, port));
    conn.push(await connectRate(host, port));
  }
  return { mibPerS: median(tp), rttUs: median(lat), connectMs: median(conn) };
}

function report(name: string, r: { mibPerS: number; rttUs: number; connectMs: number }): void {
  console.log(
    `| ${name} | ${r.mibPerS.toFixed(0)} MiB/s | ${r.rttUs.toFixed(0)} µs | ${r.connectMs.toFixed(2)} ms |`,
  );
}

await main();
