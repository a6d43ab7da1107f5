import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { forwardTargets, ipv4FromHex, ipv6FromHex, isLoopback, parseProcNetTcp, type TcpSocket } from "./proc-net-tcp.ts";

// Captured from this machine with listeners on 127.0.0.1:18080, ::1:18081, 0.0.0.0:18082, [::]:18083
// and ::ffff:127.0.0.5:18084.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   3: 00000000:46A2 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 287515 1 00000000c60c0c53 100 0 0 10 0
   5: 0100007F:46A0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 287513 1 00000000f5af6a4f 100 0 0 10 0
   6: 0100007F:46A0 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 287999 1 00000000f5af6a4f 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000500007F:46A4 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 287517 1 00000000cc6c044e 100 0 0 10 0
   1: 00000000000000000000000000000000:46A3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 287516 1 000000001afab90e 100 0 0 10 0
   2: 00000000000000000000000001000000:46A1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 287514 1 00000000cc3e8d52 100 0 0 10 0
`;

describe("parseProcNetTcp", () => {
  test("IPv4 lines: address, port, state, uid, inode", () => {
    const s = parseProcNetTcp(TCP, 4);
    assert.deepEqual(s, [
      { family: 4, address: "0.0.0.0", port: 18082, state: 0x0a, uid: 0, inode: 287515 },
      { family: 4, address: "127.0.0.1", port: 18080, state: 0x0a, uid: 0, inode: 287513 },
      { family: 4, address: "127.0.0.1", port: 18080, state: 0x01, uid: 1000, inode: 287999 },
    ]);
  });

  test("IPv6 lines: ::1, wildcard and IPv4-mapped addresses", () => {
    const s = parseProcNetTcp(TCP6, 6);
    assert.deepEqual(
      s.map((x) => [x.address, x.port, x.uid]),
      [
        ["::ffff:127.0.0.5", 18084, 0],
        ["::", 18083, 0],
        ["::1", 18081, 1000],
      ],
    );
  });

  test("malformed lines and an empty file give nothing, and never throw", () => {
    assert.deepEqual(parseProcNetTcp("", 4), []);
    assert.deepEqual(parseProcNetTcp("header\n   0: zz:1 00000000:0000 0A a b c 0 0 1\n\n", 4), []);
    assert.deepEqual(parseProcNetTcp("header\n   0: 0100007F 00000000:0000 0A a b c 0 0 1\n", 4), []);
    assert.deepEqual(parseProcNetTcp("header\n   0: 0100007F:1F90\n", 4), []);
  });

  test("address decoding", () => {
    assert.equal(ipv4FromHex("0100007F"), "127.0.0.1");
    assert.equal(ipv4FromHex("1500FEA9"), "169.254.0.21");
    assert.equal(ipv4FromHex("0100007"), undefined);
    assert.equal(ipv6FromHex("00000000000000000000000001000000"), "::1");
    assert.equal(ipv6FromHex("00000000000000000000000000000000"), "::");
    // fd00::21 → words fd000000 00000000 00000000 00000021, each printed little-endian
    assert.equal(ipv6FromHex("000000FD000000000000000021000000"), "fd00::21");
    // 2001:db8:0:1:0:0:0:1 — only the longest zero run is compressed
    assert.equal(ipv6FromHex("B80D0120010000000000000001000000"), "2001:db8:0:1::1");
    assert.equal(ipv6FromHex("xyz"), undefined);
  });

  test("isLoopback", () => {
    for (const a of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.5"]) assert.equal(isLoopback(a), true, a);
    for (const a of ["0.0.0.0", "::", "169.254.0.21", "10.0.0.1", "::2", "::ffff:10.0.0.1", "fe80::1"]) {
      assert.equal(isLoopback(a), false, a);
    }
  });
});

describe("forwardTargets", () => {
  const listen = (address: string, port: number, family: 4 | 6 = address.includes(":") ? 6 : 4): TcpSocket => ({
    family,
    address,
    port,
    state: 0x0a,
    uid: 0,
    inode: port,
  });

  test("only loopback-only listeners are forwarded, each port once, sorted", () => {
    const all = [...parseProcNetTcp(TCP, 4), ...parseProcNetTcp(TCP6, 6)];
    assert.deepEqual(forwardTargets(all), [
      { port: 18080, address: "127.0.0.1", family: 4 },
      { port: 18081, address: "::1", family: 6 },
      { port: 18084, address: "127.0.0.5", family: 4 },
    ]);
  });

  test("a port with a wildcard listener too is reachable already: not forwarded", () => {
    assert.deepEqual(forwardTargets([listen("127.0.0.1", 80), listen("0.0.0.0", 80)]), []);
    assert.deepEqual(forwardTargets([listen("::1", 81), listen("::", 81)]), []);
    assert.deepEqual(forwardTargets([listen("127.0.0.1", 82), listen("::", 82)]), []);
  });

  test("IPv4 is preferred when a port listens on both 127.0.0.1 and ::1", () => {
    assert.deepEqual(forwardTargets([listen("::1", 90), listen("127.0.0.1", 90)]), [{ port: 90, address: "127.0.0.1", family: 4 }]);
  });

  test("listeners on the host-facing addresses (our own forwards) do not count; non-LISTEN states ignored", () => {
    const ignore = new Set(["169.254.0.21", "fd00::21"]);
    const forwarded = [listen("127.0.0.1", 70), listen("169.254.0.21", 70), listen("::ffff:169.254.0.21", 70), listen("fd00::21", 70)];
    assert.deepEqual(forwardTargets(forwarded, ignore), [{ port: 70, address: "127.0.0.1", family: 4 }]);
    assert.deepEqual(forwardTargets([listen("169.254.0.21", 73)], ignore), []);
    assert.deepEqual(forwardTargets([{ ...listen("127.0.0.1", 71), state: 0x01 }]), []);
    assert.deepEqual(forwardTargets([listen("10.0.0.5", 72)]), []);
  });
});
