/**
 * Port forwarding (docs/protocol.md §7.2): every second, read /proc/net/tcp and /proc/net/tcp6; for each
 * port a guest program listens on only on loopback, listen on the host-facing address(es) (by
 * default 169.254.0.21) and relay every connection to the loopback listener. When the listener goes
 * away, the forward is closed, with its open connections.
 *
 * The relay is in-process (net.Server + two sockets piped both ways) rather than one socat per
 * port as E2B and Wrenn run: no socat needed in the user's image, no process per connection, and
 * `pipe()` gives backpressure in both directions (a slow reader pauses the other side instead of
 * buffering). Half-closes are passed on (allowHalfOpen), so request/response protocols that shut
 * down their write side work. See docs/architecture.md, "Port forwarding", for the measurements.
 *
 * Host-facing addresses that no interface has (yet) are skipped quietly and picked up on a later
 * scan once they appear.
 */
import { readFile } from "node:fs/promises";
import net from "node:net";
import { networkInterfaces } from "node:os";
import type { Logger } from "../log.ts";
import { type ForwardTarget, forwardTargets, parseProcNetTcp, TCP_LISTEN, type TcpSocket } from "./proc-net-tcp.ts";

export const SCAN_INTERVAL_MS = 1_000;

export interface PortForwarderOptions {
  log: Logger;
  /** Host-facing addresses to listen on (IPv4 and/or IPv6). */
  bindAddresses: readonly string[];
  intervalMs?: number;
  /** Reads the socket tables (tests may replace it). */
  readSockets?: () => Promise<TcpSocket[]>;
  /** Addresses configured on this machine's interfaces (tests may replace it). */
  localAddresses?: () => Set<string>;
}

export interface ForwardInfo {
  bind: string;
  port: number;
  target: string;
  connections: number;
}

/** The listening TCP sockets of /proc/net/tcp and tcp6 (all that the forwarder and the port scanner use). */
export async function readProcNetTcp(): Promise<TcpSocket[]> {
  const read = (path: string) => readFile(path, "latin1").catch(() => "");
  const [v4, v6] = await Promise.all([read("/proc/net/tcp"), read("/proc/net/tcp6")]);
  return [...parseProcNetTcp(v4, 4, TCP_LISTEN), ...parseProcNetTcp(v6, 6, TCP_LISTEN)];
}

export function interfaceAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(a.address);
  return out;
}

/** One listening socket on a host-facing address relaying to one loopback listener. */
class Forward {
  readonly bind: string;
  readonly port: number;
  readonly target: ForwardTarget;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #closed = false;

  private constructor(bind: string, target: ForwardTarget) {
    this.bind = bind;
    this.port = target.port;
    this.target = target;
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => this.#relay(client));
  }

  static open(bind: string, target: ForwardTarget): Promise<Forward> {
    const f = new Forward(bind, target);
    return new Promise((resolve, reject) => {
      f.#server.once("error", reject);
      f.#server.listen({ host: bind, port: target.port, exclusive: true }, () => {
        f.#server.off("error", reject);
        f.#server.on("error", () => {});
        resolve(f);
      });
    });
  }

  get connections(): number {
    return this.#sockets.size / 2;
  }

  #relay(client: net.Socket): void {
    if (this.#closed) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: this.target.address, port: this.target.port, allowHalfOpen: true, noDelay: true });
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      client.destroy();
      upstream.destroy();
    };
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on("error", finish);
      a.once("close", (hadError: boolean) => {
        this.#sockets.delete(a);
        if (hadError || !a.readableEnded) {
          // An abortive close (reset, error, or gone before its FIN): drop the other side too.
          finish();
          return;
        }
        // A clean close: pipe() has already called b.end(), but b may still hold bytes it has not
        // handed to the kernel (its reader is slower than ours). Destroying b now would cut that
        // tail off; close it once its writes are out. Nothing more can flow to `a`, so b's read
        // side is of no use after that.
        if (b.writableFinished) b.destroy();
        else b.once("finish", () => b.destroy());
      });
      // pipe() gives backpressure and forwards the FIN (end) without closing the read side.
      a.pipe(b);
    }
  }

  /** Stops listening and drops every relayed connection. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

export class PortForwarder {
  readonly name = "port-forwarder";
  readonly #log: Logger;
  readonly #bind: readonly string[];
  readonly #ignore: ReadonlySet<string>;
  readonly #intervalMs: number;
  readonly #readSockets: () => Promise<TcpSocket[]>;
  readonly #localAddresses: () => Set<string>;
  /** Key `<bind>|<port>`. */
  readonly #forwards = new Map<string, Forward>();
  /** Failures already logged, so a port that cannot be bound is not logged every second. */
  readonly #reported = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #running = false;
  /** Completed scans since the daemon started. */
  scans = 0;
  /** Times start() began scanning (boot, then every restore). */
  starts = 0;

  constructor(opts: PortForwarderOptions) {
    this.#log = opts.log;
    this.#bind = opts.bindAddresses;
    this.#ignore = new Set(opts.bindAddresses);
    this.#intervalMs = opts.intervalMs ?? SCAN_INTERVAL_MS;
    this.#readSockets = opts.readSockets ?? readProcNetTcp;
    this.#localAddresses = opts.localAddresses ?? interfaceAddresses;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Current forwards, sorted by port. */
  list(): ForwardInfo[] {
    return [...this.#forwards.values()]
      .map((f) => ({ bind: f.bind, port: f.port, target: f.target.address, connections: f.connections }))
      .sort((a, b) => a.port - b.port || a.bind.localeCompare(b.bind));
  }

  /** Scans now and then every interval. Idempotent. */
  start(): void {
    if (this.#running || this.#bind.length === 0) return;
    this.#running = true;
    this.starts++;
    this.#log.info("port forwarding started", { bind: this.#bind, intervalMs: this.#intervalMs });
    const tick = () => {
      if (!this.#running || this.#scanning !== undefined) return;
      this.#scanning = this.#scan().finally(() => {
        this.#scanning = undefined;
      });
    };
    tick();
    this.#timer = setInterval(tick, this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops scanning and closes every forward (and its connections). Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#scanning;
    const all = [...this.#forwards.values()];
    this.#forwards.clear();
    this.#reported.clear();
    await Promise.all(all.map((f) => f.close()));
    if (all.length > 0) this.#log.info("port forwarding stopped", { closed: all.length });
  }

  async #scan(): Promise<void> {
    let sockets: TcpSocket[];
    try {
      sockets = await this.#readSockets();
    } catch (err) {
      this.#log.warn("cannot read the socket tables", { err: String(err) });
      return;
    }
    if (!this.#running) return;
    const local = this.#localAddresses();
    const wanted = new Map<string, { bind: string; target: ForwardTarget }>();
    for (const target of forwardTargets(sockets, this.#ignore)) {
      for (const bind of this.#bind) if (local.has(bind)) wanted.set(`${bind}|${target.port}`, { bind, target });
    }
    for (const [key, f] of this.#forwards) {
      const w = wanted.get(key);
      if (w && w.target.address === f.target.address) continue;
      this.#forwards.delete(key);
      this.#log.info("port forward closed", { bind: f.bind, port: f.port, target: f.target.address });
      await f.close();
    }
    for (const key of this.#reported.keys()) if (!wanted.has(key)) this.#reported.delete(key);
    for (const [key, { bind, target }] of wanted) {
      if (this.#forwards.has(key) || !this.#running) continue;
      try {
        const f = await Forward.open(bind, target);
        if (!this.#running) {
          await f.close();
          return;
        }
        this.#forwards.set(key, f);
        this.#reported.delete(key);
        this.#log.info("port forward opened", { bind, port: target.port, target: target.address });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        if (this.#reported.get(key) !== code) {
          this.#reported.set(key, code);
          this.#log.warn("cannot forward port", { bind, port: target.port, target: target.address, err: code });
        }
      }
    }
    this.scans++;
  }
}
