import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  MEMORY_UNBOUNDED,
  memoryHeaderValue,
  readMemoryProtection,
  selfCgroupUnder,
} from "./memory-protection.ts";

function fakeFs(files: Record<string, string>) {
  return (path: string) => {
    const v = files[path];
    if (v === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
    return v;
  };
}

describe("readMemoryProtection", () => {
  it("reads request and low from the daemon's own cgroup and the smallest memory.min as floor", () => {
    const fs = fakeFs({
      "/cg/a/memory.min": "268435456\n",
      "/cg/a/b/memory.min": "67108864\n",
      "/cg/a/b/envd/memory.min": "134217728\n",
      "/cg/a/b/envd/memory.low": "268435456\n",
    });
    const p = readMemoryProtection("/cg", "/cg/a/b/envd", fs);
    assert.deepEqual(p, { request: 134217728n, low: 268435456n, floor: 67108864n, partial: false });
    assert.equal(memoryHeaderValue(p), '{"request":134217728,"low":268435456,"floor":67108864,"partial":false}');
  });

  it("an unprotected ancestor makes the floor 0 however large the request is", () => {
    const fs = fakeFs({ "/cg/a/memory.min": "0", "/cg/a/envd/memory.min": "1048576", "/cg/a/envd/memory.low": "0" });
    assert.deepEqual(readMemoryProtection("/cg", "/cg/a/envd", fs), { request: 1048576n, low: 0n, floor: 0n, partial: false });
  });

  it('"max" is an unbounded request: 2^63-1, exact in the JSON, and leaves the floor to the rest of the chain', () => {
    const fs = fakeFs({ "/cg/a/memory.min": "max", "/cg/a/envd/memory.min": "max", "/cg/a/envd/memory.low": "max" });
    const p = readMemoryProtection("/cg", "/cg/a/envd", fs);
    assert.equal(p.floor, MEMORY_UNBOUNDED);
    assert.equal(memoryHeaderValue(p), '{"request":9223372036854775807,"low":9223372036854775807,"floor":9223372036854775807,"partial":false}');
    const fs2 = fakeFs({ "/cg/a/memory.min": "max", "/cg/a/envd/memory.min": "4096", "/cg/a/envd/memory.low": "0" });
    assert.equal(readMemoryProtection("/cg", "/cg/a/envd", fs2).floor, 4096n);
  });

  it("a file that cannot be read counts as 0 and sets partial", () => {
    const fs = fakeFs({ "/cg/envd/memory.min": "garbage" });
    assert.deepEqual(readMemoryProtection("/cg", "/cg/envd", fs), { request: 0n, low: 0n, floor: 0n, partial: true });
  });

  it("no cgroup v2, no own cgroup, or one outside the root: zeros, partial", () => {
    const none = fakeFs({});
    const partial = { request: 0n, low: 0n, floor: 0n, partial: true };
    assert.deepEqual(readMemoryProtection(undefined, "/cg/envd", none), partial);
    assert.deepEqual(readMemoryProtection("/cg", undefined, none), partial);
    assert.deepEqual(readMemoryProtection("/cg/sub", "/cg/other", none), partial);
  });

  it("the root cgroup itself: zeros, not partial (determinately unprotected)", () => {
    assert.deepEqual(readMemoryProtection("/cg", "/cg", fakeFs({})), { request: 0n, low: 0n, floor: 0n, partial: false });
  });
});

describe("selfCgroupUnder", () => {
  it("joins the root with the cgroup v2 line", () => {
    assert.equal(selfCgroupUnder("/sys/fs/cgroup", "12:cpu:/x\n0::/system.slice/envd.service\n"), "/sys/fs/cgroup/system.slice/envd.service");
    assert.equal(selfCgroupUnder("/sys/fs/cgroup", "0::/\n"), "/sys/fs/cgroup");
    assert.equal(selfCgroupUnder("/sys/fs/cgroup", "4:memory:/a\n"), undefined);
  });
});
