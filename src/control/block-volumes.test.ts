import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { EnvdError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { BlockVolumes, devString, mountedDevice, parseMountRequest, parseUnmountRequest } from "./block-volumes.ts";

const log = createLogger("error", () => {});
const isRoot = process.getuid?.() === 0;
const has = (cmd: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

const status = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return [(err as EnvdError).httpStatus ?? (err as EnvdError).code, (err as EnvdError).rawMessage];
  }
  return "ok";
};

describe("volume request bodies", () => {
  test("serial: non-empty ASCII letters and digits only", () => {
    assert.deepEqual(parseMountRequest({ serial: "vol0A9", mount_path: "/mnt/v/" }), { serial: "vol0A9", mountPath: "/mnt/v" });
    for (const serial of ["", "a-b", "a b", "ä", "../x", 5, null, undefined]) {
      assert.deepEqual(status(() => parseMountRequest({ serial, mount_path: "/mnt/v" })), [3, "invalid volume serial"], String(serial));
    }
  });

  test("mount_path: required, absolute, not /", () => {
    assert.deepEqual(status(() => parseMountRequest({ serial: "a" })), [3, "mount_path is required"]);
    assert.deepEqual(status(() => parseMountRequest({ serial: "a", mount_path: "" })), [3, "mount_path is required"]);
    assert.deepEqual(status(() => parseMountRequest({ serial: "a", mount_path: 7 })), [3, "mount_path must be a string"]);
    assert.deepEqual(status(() => parseMountRequest({ serial: "a", mount_path: "mnt/v" })), [3, "mount_path must be an absolute path: 'mnt/v'"]);
    assert.deepEqual(status(() => parseMountRequest({ serial: "a", mount_path: "/a/.." })), [3, "mount_path must not be /"]);
    assert.deepEqual(status(() => parseUnmountRequest({})), [3, "mount_path is required"]);
    assert.deepEqual(status(() => parseUnmountRequest([])), [3, "the body must be a JSON object"]);
    assert.equal(parseUnmountRequest({ mount_path: "/mnt//v/" }), "/mnt/v");
  });

  test("mountinfo: the topmost mount at a path, octal escapes decoded", () => {
    const info = [
      "22 1 8:1 / / rw - ext4 /dev/sda1 rw",
      "40 22 7:3 / /mnt/a\\040b rw - ext4 /dev/loop3 rw",
      "41 40 7:4 / /mnt/a\\040b rw - ext4 /dev/loop4 rw",
    ].join("\n");
    assert.equal(mountedDevice("/mnt/a b", info), "7:4");
    assert.equal(mountedDevice("/mnt", info), undefined);
    assert.equal(devString(0x0703), "7:3");
    assert.equal(devString(259 * 256 + 1), "259:1");
  });
});

const loopSkip = !isRoot ? "needs root (losetup, mount)" : !has("losetup") || !has("mkfs.ext4") || !has("blkid") ? "needs losetup, blkid, mkfs.ext4" : false;

describe("volumes on a loop device behind a fake virtio-blk serial", { skip: loopSkip }, () => {
  let dir: string;
  const loops: string[] = [];
  let volumes: BlockVolumes;
  const signal = new AbortController().signal;
  const mnt = () => join(dir, "mnt", "vol");

  /** A sparse file on a loop device, shown as /sys/block/<name>/serial = serial. */
  const attach = (name: string, serial: string, bytes = 64 << 20) => {
    const file = join(dir, `${name}.img`);
    writeFileSync(file, "");
    execFileSync("truncate", ["-s", String(bytes), file]);
    const loop = execFileSync("losetup", ["-f", "--show", file], { encoding: "utf8" }).trim();
    loops.push(loop);
    mkdirSync(join(dir, "sys", name), { recursive: true });
    writeFileSync(join(dir, "sys", name, "serial"), `${serial}\n`);
    symlinkSync(loop, join(dir, "dev", name));
    return { file, loop };
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "envd-volumes-"));
    mkdirSync(join(dir, "dev"));
    // A non-virtio entry with the same serial must never be picked.
    mkdirSync(join(dir, "sys", "loop9"), { recursive: true });
    writeFileSync(join(dir, "sys", "loop9", "serial"), "VOL1\n");
    volumes = new BlockVolumes({ log, sysBlockDir: join(dir, "sys"), devDir: join(dir, "dev"), pollIntervalMs: 5 });
  });

  after(() => {
    for (const p of [mnt(), join(dir, "mnt", "other")]) {
      for (let i = 0; i < 3 && mountedDevice(p); i++) execFileSync("umount", [p]);
    }
    for (const loop of loops) execFileSync("losetup", ["-d", loop]);
    rmSync(dir, { recursive: true, force: true });
  });

  test("a blank disk is formatted once, opened up (1777), and mounted; data survives unmount and remount", async () => {
    const { loop } = attach("vdx", "VOL1");
    const first = await volumes.mount({ serial: "VOL1", mountPath: mnt() }, signal);
    assert.deepEqual(first, { device: join(dir, "dev", "vdx"), formatted: true, alreadyMounted: false });
    assert.equal(mountedDevice(mnt()), devString(statSync(loop).rdev));
    assert.equal(statSync(mnt()).mode & 0o7777, 0o1777);
    writeFileSync(join(mnt(), "kept.txt"), "kept\n");

    // The same call again (the host retries): success, nothing redone.
    assert.deepEqual(await volumes.mount({ serial: "VOL1", mountPath: mnt() }, signal), { ...first, formatted: false, alreadyMounted: true });

    await volumes.unmount(mnt(), signal);
    assert.equal(mountedDevice(mnt()), undefined);
    await volumes.unmount(mnt(), signal); // nothing mounted: still fine

    // Mode changed by the user: a remount of the existing filesystem leaves it as it is.
    const again = await volumes.mount({ serial: "VOL1", mountPath: mnt() }, signal);
    assert.equal(again.formatted, false);
    assert.equal(readFileSync(join(mnt(), "kept.txt"), "utf8"), "kept\n");
    execFileSync("chmod", ["755", mnt()]);
    await volumes.unmount(mnt(), signal);
    await volumes.mount({ serial: "VOL1", mountPath: mnt() }, signal);
    assert.equal(statSync(mnt()).mode & 0o7777, 0o755);
    await volumes.unmount(mnt(), signal);
  });

  test("an unknown serial is 404 after the poll", async () => {
    await assert.rejects(volumes.mount({ serial: "NOPE", mountPath: mnt() }, signal), (err: EnvdError) => {
      assert.equal(err.rawMessage, "no block device with serial NOPE");
      assert.equal(err.code, 5);
      return true;
    });
  });

  test("a disk with data blkid does not recognise is never formatted (409, bytes unchanged)", async () => {
    const { file } = attach("vdy", "VOL2");
    const fd = openSync(file, "r+");
    writeSync(fd, Buffer.from("precious bytes"), 0, 14, 4096);
    closeSync(fd);
    await assert.rejects(volumes.mount({ serial: "VOL2", mountPath: join(dir, "mnt", "other") }, signal), (err: EnvdError) => {
      assert.equal(err.code, 6);
      assert.match(err.rawMessage, /holds data \(a non-zero byte at offset 4096\); refusing to format it/);
      return true;
    });
    execFileSync("sync");
    assert.equal(readFileSync(file).subarray(4096, 4110).toString(), "precious bytes");
    assert.equal(mountedDevice(join(dir, "mnt", "other")), undefined);
  });

  test("a path that is the mount point of another device is refused (409)", async () => {
    attach("vdz", "VOL3");
    await volumes.mount({ serial: "VOL1", mountPath: mnt() }, signal);
    await assert.rejects(volumes.mount({ serial: "VOL3", mountPath: mnt() }, signal), /already a mount point of another device/);
    await volumes.unmount(mnt(), signal);
  });
});
