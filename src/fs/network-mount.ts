/**
 * The watch guard of E2B envd (docs/protocol.md §3.5): inotify sees only local changes, so watching a
 * network or FUSE filesystem silently misses what other machines do. Such paths are refused
 * unless the client opts in with `allow_network_mounts`.
 */
import { statfs } from "node:fs/promises";
import { fromNodeError } from "../errors.ts";

/** statfs f_type values (linux/magic.h) treated as network filesystems, with their names. */
export const NETWORK_FS_TYPES: ReadonlyMap<number, string> = new Map([
  [0x6969, "nfs"],
  [0xff534d42, "cifs"],
  [0x517b, "smb"],
  [0xfe534d42, "smb2"],
  [0x65735546, "fuse"],
]);

/** The network filesystem's name for a statfs type, or undefined for a local one. */
export function networkFsName(type: number | bigint): string | undefined {
  // f_type is a signed long: normalise to the unsigned 32-bit magic.
  const magic = Number(BigInt.asUintN(32, BigInt(type)));
  return NETWORK_FS_TYPES.get(magic);
}

/** The network filesystem `path` is on, or undefined. */
export async function networkFsOf(path: string): Promise<string | undefined> {
  try {
    const st = await statfs(path);
    return networkFsName(st.type);
  } catch (err) {
    throw fromNodeError(err, `error checking mount status of ${path}`);
  }
}
