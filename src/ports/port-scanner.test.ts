import assert from "node:assert/strict";
import { test } from "node:test";
import { type PortChange, PortScanner } from "./port-scanner.ts";
import { TCP_LISTEN, type TcpSocket } from "./proc-net-tcp.ts";

const sock = (port: number, inode: number, address = "127.0.0.1", state = TCP_LISTEN): TcpSocket => ({
  family: address.includes(":") ? 6 : 4,
  address,
  port,
  state,
  uid: 1000,
  inode,
});

function fake() {
  let sockets: TcpSocket[] = [];
  const ownerCalls: number[][] = [];
  const scanner = new PortScanner({
    intervalMs: 5,
    readSockets: async () => sockets,
    owners: async (inodes) => {
      ownerCalls.push([...inodes]);
      return new Map([...inodes].map((i) => [i, { pid: i * 10, cmd: `cmd${i}` }]));
    },
    hide: (l) => l.address === "169.254.0.21",
  });
  return { scanner, ownerCalls, set: (s: TcpSocket[]) => {
      sockets = s;
    },
  };
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 2));
  }
}

test("the first scan is a listing, later scans report opened and closed listeners with their owner, looked up once", async () => {
  const { scanner, ownerCalls, set } = fake();
  set([sock(80, 1), sock(22, 2, "0.0.0.0", 0x01)]);
  const changes: PortChange[] = [];
  using _s = scanner.subscribe((c) => changes.push(c));
  await scanner.scanned();
  assert.deepEqual(scanner.current()?.map((l) => [l.port, l.pid, l.cmd]), [[80, 10, "cmd1"]], "only LISTEN sockets");
  set([sock(80, 1), sock(443, 3, "::"), sock(443, 4, "169.254.0.21")]);
  await until(() => changes.length === 1);
  assert.deepEqual(changes[0]?.opened.map((l) => [l.port, l.address, l.family, l.pid]), [[443, "::", 6, 30]]);
  assert.deepEqual(changes[0]?.closed, []);
  set([sock(443, 3, "::"), sock(443, 4, "169.254.0.21")]);
  await until(() => changes.length === 2);
  assert.deepEqual(changes[1]?.closed.map((l) => l.port), [80]);
  assert.deepEqual(ownerCalls.map((c) => c.sort()), [[1], [3, 4]], "owners looked up only for new sockets");
});

test("a socket replaced on the same port (new inode) is closed then opened", async () => {
  const { scanner, set } = fake();
  set([sock(8080, 7)]);
  const changes: PortChange[] = [];
  using _s = scanner.subscribe((c) => changes.push(c));
  await scanner.scanned();
  set([sock(8080, 8)]);
  await until(() => changes.length === 1);
  assert.deepEqual(changes[0]?.closed.map((l) => l.inode), [7]);
  assert.deepEqual(changes[0]?.opened.map((l) => l.inode), [8]);
});

test("scans only while subscribed; stop() (snapshot) pauses it and start() reports what changed meanwhile", async () => {
  const { scanner, set } = fake();
  set([sock(1, 1)]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(scanner.scans, 0, "no subscriber, no scan");
  const changes: PortChange[] = [];
  const sub = scanner.subscribe((c) => changes.push(c));
  await scanner.scanned();
  await scanner.stop();
  const n = scanner.scans;
  set([sock(2, 2)]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(scanner.scans, n, "paused");
  scanner.start();
  await until(() => changes.length === 1);
  assert.deepEqual(changes[0]?.opened.map((l) => l.port), [2]);
  assert.deepEqual(changes[0]?.closed.map((l) => l.port), [1]);
  sub[Symbol.dispose]();
  const m = scanner.scans;
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(scanner.scans <= m + 1, "stopped with the last subscriber");
  assert.equal(scanner.current(), undefined, "the next subscriber starts from a fresh listing");
});

test("fresh() waits for a scan begun after the call, so a listener opened just before is listed", async () => {
  let sockets: TcpSocket[] = [sock(80, 1)];
  let reads = 0;
  // A long interval: the loop, kept running by another subscriber, would not scan again by itself.
  const scanner = new PortScanner({
    intervalMs: 60_000,
    readSockets: async () => {
      reads++;
      return sockets;
    },
    owners: async (inodes) => new Map([...inodes].map((i) => [i, { pid: i, cmd: "" }])),
  });
  const changes: PortChange[] = [];
  using _s = scanner.subscribe((c) => changes.push(c));
  await scanner.scanned();
  sockets = [sock(80, 1), sock(3000, 2)];
  assert.deepEqual(scanner.current()?.map((l) => l.port), [80], "the last listing predates the new listener");
  await scanner.fresh();
  assert.deepEqual(scanner.current()?.map((l) => l.port), [80, 3000]);
  assert.equal(reads, 2);
  assert.deepEqual(changes.map((c) => c.opened.map((l) => l.port)), [[3000]], "subscribers see the change as usual");
  await scanner.stop();
  await scanner.fresh(); // paused: the last listing, no scan
  assert.equal(reads, 2);
});
