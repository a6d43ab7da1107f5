import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { UserDb, parsePasswd } from "./user-db.ts";

test("parsePasswd skips comments and malformed lines and keeps the first duplicate", () => {
  const users = parsePasswd("# c\nroot:x:0:0:root:/root:/bin/bash\nbad:line\nroot:x:5:5::/x:/bin/sh\nu:x:1000:1000::/srv/u:\n");
  assert.equal(users.size, 2);
  assert.deepEqual(users.get("root"), { name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/bash", groups: [] });
  assert.equal(users.get("u")?.shell, "/bin/sh");
});

test("UserDb resolves supplementary groups, names ids, and sees file changes", () => {
  const dir = mkdtempSync(join(tmpdir(), "userdb-"));
  const passwd = join(dir, "passwd");
  const group = join(dir, "group");
  writeFileSync(passwd, "alice:x:1000:1000::/data/alice:/bin/zsh\n");
  writeFileSync(group, "alice:x:1000:\ndocker:x:999:alice,bob\nwheel:x:10:bob\n");
  const db = new UserDb({ passwd, group });
  assert.deepEqual(db.lookup("alice"), {
    name: "alice",
    uid: 1000,
    gid: 1000,
    home: "/data/alice",
    shell: "/bin/zsh",
    groups: [999],
  });
  assert.equal(db.lookup("bob"), undefined);
  assert.equal(db.userName(1000), "alice");
  assert.equal(db.userName(4242), "4242");
  assert.equal(db.groupName(10), "wheel");
  writeFileSync(passwd, "alice:x:1000:1000::/data/alice:/bin/zsh\nbob:x:1001:1001::/home/bob:/bin/sh\n");
  assert.equal(db.lookup("bob")?.groups.join(","), "999,10");
});
