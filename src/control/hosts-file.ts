/**
 * Pins the events host (`events.e2b.local`, Wrenn: `events.wrenn.local`) to /init's hyperloopIP in
 * the hosts file (docs/protocol.md §6.4). Every other line is kept byte for byte; the name is removed
 * from lines of the same address family that carry it, and one `<ip>\t<name>` line is added. A
 * file that already maps the name to the address is left untouched.
 */
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { dirname, join } from "node:path";

/** The new hosts text, or undefined when `text` already maps `name` to `ip` (and only to it). */
export function pinHost(text: string, name: string, ip: string): string | undefined {
  const family = isIP(ip);
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  const mapped: string[] = [];
  const out: string[] = [];
  for (const line of lines) {
    const [addr, ...names] = line.replace(/#.*$/, "").trim().split(/\s+/).filter(Boolean);
    if (!addr || isIP(addr) !== family || !names.includes(name)) {
      out.push(line);
      continue;
    }
    mapped.push(addr);
    const rest = names.filter((n) => n !== name);
    if (rest.length > 0) out.push(`${addr}\t${rest.join(" ")}`);
  }
  if (mapped.length === 1 && mapped[0] === ip) return undefined;
  out.push(`${ip}\t${name}`);
  return `${out.join("\n")}\n`;
}

/** Rewrites `path` (atomically, keeping its mode) so that `name` resolves to `ip`. Returns whether it changed. */
export function writeHostEntry(path: string, name: string, ip: string): boolean {
  let text = "";
  let mode = 0o644;
  try {
    text = readFileSync(path, "utf8");
    mode = statSync(path).mode & 0o7777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const next = pinHost(text, name, ip);
  if (next === undefined) return false;
  // /etc/hosts is often a bind mount (Docker) where rename fails: fall back to writing in place.
  const tmp = join(dirname(path), `.hosts.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, next, { mode });
    renameSync(tmp, path);
  } catch {
    rmSync(tmp, { force: true });
    writeFileSync(path, next, { mode });
  }
  return true;
}
