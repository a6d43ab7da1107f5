/**
 * The workload's cgroup layout (docs/protocol.md §7.3): which groups exist, what limits each gets, and
 * where the daemon's own group is (never frozen). Pure apart from reading /proc/self.
 */
import { readFileSync } from "node:fs";

export type CgroupKind = "pty" | "user" | "socat";

export const GROUP_DIRS: Readonly<Record<CgroupKind, string>> = { pty: "ptys", user: "user", socat: "socats" };

const MIB = 1024 * 1024;

/** Memory the workload may use: MemTotal − min(MemTotal/8, 128 MiB), so the daemon keeps room to work. */
export function workloadMemoryBytes(memTotalBytes: number): number {
  return Math.max(0, memTotalBytes - Math.min(Math.floor(memTotalBytes / 8), 128 * MIB));
}

/** The files each group gets, in order (docs/protocol.md §7.3). */
export function groupSettings(memTotalBytes: number): Record<CgroupKind, [file: string, value: string][]> {
  const m = String(workloadMemoryBytes(memTotalBytes));
  return {
    pty: [
      ["cpu.weight", "200"],
      ["io.weight", "default 50"],
      ["memory.high", m],
      ["memory.max", m],
    ],
    user: [
      ["cpu.weight", "50"],
      ["io.weight", "default 10"],
      ["memory.high", m],
      ["memory.max", m],
    ],
    socat: [
      ["cpu.weight", "150"],
      ["io.weight", "default 50"],
      ["memory.min", String(5 * MIB)],
      ["memory.low", String(8 * MIB)],
    ],
  };
}

/** MemTotal in bytes from /proc/meminfo text; 0 when absent. */
export function memTotalFromMeminfo(text: string): number {
  const m = /^MemTotal:\s+(\d+)\s+kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** The daemon's own cgroup directory, read from /proc/self; undefined when it cannot be told. */
export function readSelfCgroupDir(): string | undefined {
  try {
    return selfCgroupDir(readFileSync("/proc/self/mountinfo", "utf8"), readFileSync("/proc/self/cgroup", "utf8"));
  } catch {
    return undefined;
  }
}

/** The daemon's own cgroup directory: the cgroup2 mount point joined with /proc/self/cgroup's `0::` path. */
export function selfCgroupDir(mountinfo: string, procSelfCgroup: string): string | undefined {
  const path = /^0::(\/.*)$/m.exec(procSelfCgroup)?.[1];
  if (path === undefined) return undefined;
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(" ")[0];
    if (fstype !== "cgroup2") continue;
    const fields = line.slice(0, sep).split(" ");
    const mountPoint = fields[4];
    if (mountPoint) return path === "/" ? mountPoint : `${mountPoint}${path}`;
  }
  return undefined;
}
