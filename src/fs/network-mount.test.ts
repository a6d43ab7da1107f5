import assert from "node:assert/strict";
import { test } from "node:test";
import { networkFsName, networkFsOf } from "./network-mount.ts";

test("networkFsName knows E2B envd's network filesystem magics, signed or not", () => {
  assert.equal(networkFsName(0x6969), "nfs");
  assert.equal(networkFsName(0xff534d42), "cifs");
  assert.equal(networkFsName(-0xacb2be), "cifs"); // 0xFF534D42 as a signed 32-bit value
  assert.equal(networkFsName(0x517b), "smb");
  assert.equal(networkFsName(0xfe534d42), "smb2");
  assert.equal(networkFsName(0x65735546n), "fuse");
  assert.equal(networkFsName(0xef53), undefined); // ext4
  assert.equal(networkFsName(0x01021994), undefined); // tmpfs
});

test("networkFsOf: a local directory is not a network mount; a missing one is not_found", async () => {
  assert.equal(await networkFsOf("/tmp"), undefined);
  await assert.rejects(networkFsOf("/nonexistent-dir-xyz"), /no such file/);
});
