/**
 * Listening TCP sockets as a stream of changes, for WatchPorts and WaitForPort (our own Ports
 * service, docs/compatibility.md "Beyond the anchors"). It reads the same socket tables as the
 * port forwarder (`readProcNetTcp`, /proc/net/tcp and tcp6), but only while somebody subscribes,
 * and more often (every 200 ms: a reader waiting for a port should not wait a second more than
 * needed; two reads of a few KiB each). Each new socket is matched to its process through
 * /proc/<pid>/fd (the `socket:[inode]` links), once, when it appears.
 *
 * It is a background loop (snapshot/loop-registry.ts): stopped before a snapshot, started again after the
 * restore; subscribers simply see the changes of the next scan.
 */
import { readdir, readFile, readlink } from "node:fs/promises";
import { readProcNetTcp } from "./port-forwarder.ts";
import { TCP_LISTEN, type TcpSocket } from "./proc-net-tcp.ts";

export const PORT_SCAN_INTERVAL_MS = 200;

export interface Listener {
  address: string;
  port: number;
  family: 4 | 6;
  uid: number;
  inode: number;
  /** 0 when no process holding the socket could be found. */
  pid: number;
  /** Command line (arguments joined by spaces) or comm; "" when pid is 0. */
  cmd: string;
}

export interface PortChange {
  opened: Listener[];
  closed: Listener[];
}

export interface PortScannerOptions {
  intervalMs?: number;
  /** Reads the socket tables (tests may replace it). */
  readSockets?: () => Promise<TcpSocket[]>;
  /** Finds the process of each socket inode (tests may replace it). */
  owners?: (inodes: ReadonlySet<number>) => Promise<Map<number, { pid: number; cmd: string }>>;
  /** Listeners never reported (the daemon's own port forwards). */
  hide?: (l: Listener) => boolean;
}

type Subscriber = (change: PortChange) => void;

const keyOf = (s: { family: number; address: string; port: number; inode: number }) => `${s.family}|${s.address}|${s.port}|${s.inode}`;

export class PortScanner implements AsyncDisposable {
  readonly name = "port-scanner";
  readonly #intervalMs: number;
  readonly #readSockets: () => Promise<TcpSocket[]>;
  readonly #owners: (inodes: ReadonlySet<number>) => Promise<Map<number, { pid: number; cmd: string }>>;
  readonly #hide: (l: Listener) => boolean;
  readonly #subscribers = new Set<Subscriber>();
  /** Listeners of the last scan, by key; undefined until the first scan since the loop started. */
  #current: Map<string, Listener> | undefined;
  /** Keys of sockets `hide` refused, so their owner is not looked up again every scan. */
  readonly #hidden = new Set<string>();
  #scanned: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  /** Stopped by the loop registry (snapshot); subscriptions do not restart it until start(). */
  #paused = false;
  /** Completed scans (tests). */
  scans = 0;

  constructor(opts: PortScannerOptions = {}) {
    this.#intervalMs = opts.intervalMs ?? PORT_SCAN_INTERVAL_MS;
    this.#readSockets = opts.readSockets ?? readProcNetTcp;
    this.#owners = opts.owners ?? socketOwners;
    this.#hide = opts.hide ?? (() => false);
  }

  /** The listeners of the last scan, sorted by port then address; undefined before the first one. */
  current(): Listener[] | undefined {
    return this.#current && sortListeners([...this.#current.values()]);
  }

  /**
   * Calls `onChange` with every later change. Scanning runs while there is a subscriber.
   * Use `scanned()` to wait for the first listing.
   */
  subscribe(onChange: Subscriber): Disposable {
    this.#subscribers.add(onChange);
    this.#ensureRunning();
    return {
      [Symbol.dispose]: () => {
        this.#subscribers.delete(onChange);
        if (this.#subscribers.size > 0) return;
        this.#halt();
        // The next subscriber starts from a fresh listing: what changed meanwhile was not watched.
        this.#current = undefined;
      },
    };
  }

  /** Resolves after the next completed scan (at once when one has completed and nothing is pending). */
  scanned(): Promise<void> {
    if (this.#current) return Promise.resolve();
    return new Promise((resolve) => this.#scanned.push(resolve));
  }

  /**
   * Resolves after a scan that began after this call, so `current()` is a listing as of now (the
   * last one may be up to an interval old when another subscriber keeps the loop running). Scans
   * at once rather than waiting for the timer. While paused, the last listing is all there is.
   */
  async fresh(): Promise<void> {
    if (!this.#timer) return this.scanned();
    await this.#scanning; // one in flight may have read the tables before this call
    if (!this.#timer) return;
    await this.#startScan();
  }

  /** Loop registry: scanning may run again (when subscribed). Idempotent. */
  start(): void {
    this.#paused = false;
    this.#ensureRunning();
  }

  /** Loop registry: no scan until start(); resolves when none is in flight. Idempotent. */
  async stop(): Promise<void> {
    this.#paused = true;
    this.#halt();
    await this.#scanning;
  }

  /** Shutdown: stop(). Idempotent. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #ensureRunning(): void {
    if (this.#timer || this.#paused || this.#subscribers.size === 0) return;
    const tick = () => {
      if (this.#scanning === undefined) void this.#startScan();
    };
    this.#timer = setInterval(tick, this.#intervalMs);
    this.#timer.unref();
    tick();
  }

  /** The scan in flight, or a new one: never two at once. */
  #startScan(): Promise<void> {
    this.#scanning ??= this.#scan()
      .catch(() => {})
      .finally(() => {
        this.#scanning = undefined;
      });
    return this.#scanning;
  }

  /** Stops the timer; the last listing stays, so after a snapshot the first scan reports what changed meanwhile. */
  #halt(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #scan(): Promise<void> {
    const sockets = (await this.#readSockets()).filter((s) => s.state === TCP_LISTEN);
    if (!this.#timer) return;
    const previous = this.#current ?? new Map<string, Listener>();
    const seen = new Map<string, TcpSocket>();
    for (const s of sockets) seen.set(keyOf(s), s);
    for (const k of this.#hidden) if (!seen.has(k)) this.#hidden.delete(k);
    const fresh = [...seen.entries()].filter(([k]) => !previous.has(k) && !this.#hidden.has(k));
    const owners = fresh.length > 0 ? await this.#owners(new Set(fresh.map(([, s]) => s.inode))) : new Map();
    if (!this.#timer) return;
    const next = new Map<string, Listener>();
    const opened: Listener[] = [];
    for (const [k, s] of seen) {
      const old = previous.get(k);
      if (this.#hidden.has(k)) continue;
      if (old) {
        next.set(k, old);
        continue;
      }
      const owner = owners.get(s.inode);
      const l: Listener = { address: s.address, port: s.port, family: s.family, uid: s.uid, inode: s.inode, pid: owner?.pid ?? 0, cmd: owner?.cmd ?? "" };
      if (this.#hide(l)) {
        this.#hidden.add(k);
        continue;
      }
      next.set(k, l);
      opened.push(l);
    }
    const closed = [...previous.entries()].filter(([k]) => !seen.has(k)).map(([, l]) => l);
    const first = this.#current === undefined;
    this.#current = next;
    this.scans++;
    for (const resolve of this.#scanned.splice(0)) resolve();
    // The first listing is not a change: subscribers read it with current().
    if (first || (opened.length === 0 && closed.length === 0)) return;
    const change = { opened: sortListeners(opened), closed: sortListeners(closed) };
    for (const s of [...this.#subscribers]) s(change);
  }
}

export function sortListeners(list: Listener[]): Listener[] {
  return list.sort((a, b) => a.port - b.port || a.family - b.family || a.address.localeCompare(b.address) || a.inode - b.inode);
}

/**
 * The process holding each socket inode: walks /proc/<pid>/fd once for all of them (the first
 * holder found wins; a forked server shares its socket with its children).
 */
export async function socketOwners(inodes: ReadonlySet<number>): Promise<Map<number, { pid: number; cmd: string }>> {
  const out = new Map<number, { pid: number; cmd: string }>();
  const wanted = new Set([...inodes].map((i) => `socket:[${i}]`));
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((n) => /^\d+$/.test(n)).map(Number);
  pids.sort((a, b) => a - b);
  for (const pid of pids) {
    if (out.size === inodes.size) break;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    const links = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")));
    const found = links.filter((l) => wanted.has(l));
    if (found.length === 0) continue;
    const cmd = await commandOf(pid);
    for (const l of found) {
      const inode = Number(l.slice(8, -1));
      if (!out.has(inode)) out.set(inode, { pid, cmd });
    }
  }
  return out;
}

async function commandOf(pid: number): Promise<string> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const args = cmdline.split("\0").filter((a) => a !== "");
  if (args.length > 0) return args.join(" ");
  return (await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "")).trim();
}
