/**
 * EntryInfo values as E2B envd computes them (docs/protocol.md §3.2), as a domain type: the RPC layer
 * turns it into the protobuf message.
 *
 * - type comes from lstat; a symlink reports its target's type; a broken link, socket, device or
 *   fifo is "unspecified" (the SDK drops those from listings);
 * - size, permissions text, owner and group come from lstat (the link itself);
 * - mode is the permission bits of the target for a symlink, 0 for a broken one;
 * - symlinkTarget is the fully resolved absolute target, or the link's own path if unresolvable;
 * - metadata is the `user.e2b.*` xattrs (see xattr.ts), undefined when there are none.
 */
import { lstat, realpath, stat } from "node:fs/promises";
import { basename } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import type { UserDb } from "../users/user-db.ts";
import { goFileModeText, isDirectoryMode, isRegularMode, isSymlinkMode, permissionBits } from "./file-mode.ts";
import { isOwnTempName } from "./own-temp-files.ts";
import { readMetadata } from "./xattr.ts";

export type EntryType = "file" | "directory" | "unspecified";

export interface Entry {
  name: string;
  type: EntryType;
  path: string;
  size: bigint;
  mode: number;
  permissions: string;
  owner: string;
  group: string;
  /** mtime; undefined when it is the zero time (as Go omits it). */
  modified: { seconds: bigint; nanos: number } | undefined;
  symlinkTarget: string | undefined;
  metadata: Record<string, string> | undefined;
}

/** Names of uids and gids; `UserDb` implements it. */
export type OwnerNames = Pick<UserDb, "userName" | "groupName">;

/**
 * The entry at `path` (not following a final symlink). Missing → NotFound ("file not found: …");
 * other failures keep their errno mapping (fromNodeError).
 */
export async function entryInfo(path: string, names: OwnerNames): Promise<Entry> {
  // The daemon's own in-flight temporary files (uploads) are not there for anybody (own-temp-files.ts).
  if (isOwnTempName(basename(path))) throw new EnvdError(Code.NotFound, `file not found: ${path}`);
  let st: import("node:fs").BigIntStats;
  try {
    st = await lstat(path, { bigint: true });
  } catch (err) {
    if (isGone(err)) throw new EnvdError(Code.NotFound, `file not found: ${path}`, { cause: err });
    throw fromNodeError(err, `stat ${path}`);
  }
  return entryFromStats(path, st, names);
}

/** Like `entryInfo`, but undefined when the path no longer exists (for listings and events). */
export async function entryInfoIfExists(path: string, names: OwnerNames): Promise<Entry | undefined> {
  if (isOwnTempName(basename(path))) return undefined;
  let st: import("node:fs").BigIntStats;
  try {
    st = await lstat(path, { bigint: true });
  } catch (err) {
    if (isGone(err)) return undefined;
    throw fromNodeError(err, `stat ${path}`);
  }
  return entryFromStats(path, st, names);
}

async function entryFromStats(path: string, st: import("node:fs").BigIntStats, names: OwnerNames): Promise<Entry> {
  const rawMode = Number(st.mode);
  let type: EntryType = typeOfMode(rawMode);
  let mode = permissionBits(rawMode);
  let symlinkTarget: string | undefined;
  if (isSymlinkMode(rawMode)) {
    symlinkTarget = await realpath(path).catch(() => path);
    try {
      const target = await stat(symlinkTarget, { bigint: true });
      type = typeOfMode(Number(target.mode));
      mode = permissionBits(Number(target.mode));
    } catch {
      type = "unspecified";
      mode = 0;
    }
  }
  // Metadata never fails a stat: a file without xattr support or one that vanished has none.
  const metadata = await readMetadata(path).catch(() => undefined);
  const ns = st.mtimeNs;
  return {
    name: basename(path) || "/",
    type,
    path,
    size: st.size,
    mode,
    permissions: goFileModeText(rawMode),
    owner: names.userName(Number(st.uid)),
    group: names.groupName(Number(st.gid)),
    modified: ns === 0n ? undefined : { seconds: floorDiv(ns, 1_000_000_000n), nanos: Number(floorMod(ns, 1_000_000_000n)) },
    symlinkTarget,
    metadata: metadata && Object.keys(metadata).length > 0 ? metadata : undefined,
  };
}

function typeOfMode(mode: number): EntryType {
  if (isRegularMode(mode)) return "file";
  if (isDirectoryMode(mode)) return "directory";
  return "unspecified";
}

/** ENOENT, or ENOTDIR when a parent was replaced by a file: the entry is gone either way. */
export function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}

function floorMod(a: bigint, b: bigint): bigint {
  const m = a % b;
  return m < 0n ? m + b : m;
}
