/**
 * Users and groups from the system's databases (/etc/passwd, /etc/group).
 *
 * Parsed directly (Node and Bun have no getpwnam); re-read only when a file's mtime or size
 * changes, so `useradd` inside the sandbox is seen at once while a Start costs no file read.
 * NSS sources other than files (LDAP, sssd) are not consulted: sandbox images do not use them.
 */
import { readFileSync, statSync } from "node:fs";

export interface User {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
  /** Supplementary group ids (from /etc/group membership), without the primary gid. */
  groups: number[];
}

interface Table<T> {
  key: string;
  value: T;
}

export interface UserDbPaths {
  passwd: string;
  group: string;
}

export class UserDb {
  readonly #paths: UserDbPaths;
  #passwd: Table<Map<string, User>> | undefined;
  #group: Table<{ byGid: Map<number, string>; members: Map<string, number[]> }> | undefined;

  constructor(paths: UserDbPaths = { passwd: "/etc/passwd", group: "/etc/group" }) {
    this.#paths = paths;
  }

  /** The user named `name`, or undefined. Numeric names are not taken as uids. */
  lookup(name: string): User | undefined {
    const users = this.#users();
    const user = users.get(name);
    if (!user) return undefined;
    const groups = this.#groups().members.get(name) ?? [];
    return { ...user, groups: groups.filter((g) => g !== user.gid) };
  }

  /** Name of a uid, or the decimal id when unknown (as Go's os/user fallback). */
  userName(uid: number): string {
    for (const u of this.#users().values()) if (u.uid === uid) return u.name;
    return String(uid);
  }

  /** Name of a gid, or the decimal id when unknown. */
  groupName(gid: number): string {
    return this.#groups().byGid.get(gid) ?? String(gid);
  }

  #users(): Map<string, User> {
    const key = fileKey(this.#paths.passwd);
    if (this.#passwd?.key !== key) this.#passwd = { key, value: parsePasswd(readText(this.#paths.passwd)) };
    return this.#passwd.value;
  }

  #groups() {
    const key = fileKey(this.#paths.group);
    if (this.#group?.key !== key) this.#group = { key, value: parseGroup(readText(this.#paths.group)) };
    return this.#group.value;
  }
}

function fileKey(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return "missing";
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export function parsePasswd(text: string): Map<string, User> {
  const users = new Map<string, User>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 7) continue;
    const [name, , uid, gid, , home, shell] = f as [string, string, string, string, string, string, string];
    const u = Number(uid);
    const g = Number(gid);
    if (!name || !Number.isInteger(u) || !Number.isInteger(g) || users.has(name)) continue;
    users.set(name, { name, uid: u, gid: g, home: home || "/", shell: shell || "/bin/sh", groups: [] });
  }
  return users;
}

export function parseGroup(text: string) {
  const byGid = new Map<number, string>();
  const members = new Map<string, number[]>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 4) continue;
    const [name, , gidText, list] = f as [string, string, string, string];
    const gid = Number(gidText);
    if (!name || !Number.isInteger(gid)) continue;
    if (!byGid.has(gid)) byGid.set(gid, name);
    for (const member of list.split(",")) {
      const m = member.trim();
      if (!m) continue;
      const gids = members.get(m) ?? [];
      if (!gids.includes(gid)) gids.push(gid);
      members.set(m, gids);
    }
  }
  return { byGid, members };
}
