import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { bytesPerSecond, PhysicalDisks, parseDiskstatsBytes, parseNetDevBytes } from "./activity.ts";

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 16356484507  845341    0    0    0     0          0         0 16356484507  845341    0    0    0     0       0          0
  eth0:    1000      10    0    0    0     0          0         0      200       2    0    0    0     0       0          0
  eth1:      30       1    0    0    0     0          0         0        4       1    0    0    0     0       0          0
`;

const DISKSTATS = `   7       0 loop0 581 9 24624 189 123 102 11216 99 0 208 379 2 0 131074 0 84 90
 253       0 vda 100 0 8 10 50 0 16 20 0 30 30
 253       1 vda1 100 0 8 10 50 0 16 20 0 30 30
 253      16 vdb 1 0 2 0 1 0 2 0 0 0 0
`;

const dir = mkdtempSync(join(tmpdir(), "envd-activity-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("network: receive + transmit of every interface but loopback", () => {
  assert.equal(parseNetDevBytes(NET_DEV), 1000 + 200 + 30 + 4);
  assert.equal(parseNetDevBytes(""), 0);
});

test("disk: sectors read + written × 512 of the whole disks named, never their partitions", () => {
  assert.equal(parseDiskstatsBytes(DISKSTATS, new Set(["vda", "vdb"])), (8 + 16 + 2 + 2) * 512);
  assert.equal(parseDiskstatsBytes(DISKSTATS, new Set()), 0);
});

test("physical disks: /sys/block entries that are not virtual devices", () => {
  const sys = join(dir, "block");
  mkdirSync(join(dir, "devices/virtual/block/loop0"), { recursive: true });
  mkdirSync(join(dir, "devices/platform/virtio0/block/vda"), { recursive: true });
  mkdirSync(sys);
  symlinkSync("../devices/virtual/block/loop0", join(sys, "loop0"));
  symlinkSync("../devices/platform/virtio0/block/vda", join(sys, "vda"));
  assert.deepEqual([...new PhysicalDisks(sys).list()], ["vda"]);
  assert.deepEqual([...new PhysicalDisks(join(dir, "missing")).list()], []);
});

test("rates: bytes per second over the interval; a counter that went back (wrap, new device set) is 0", () => {
  assert.equal(bytesPerSecond(1000, 3000, 1000), 2000);
  assert.equal(bytesPerSecond(1000, 3000, 500), 4000);
  assert.equal(bytesPerSecond(3000, 1000, 1000), 0);
  assert.equal(bytesPerSecond(0, 10, 0), 0);
});
