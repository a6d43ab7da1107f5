/**
 * Move as E2B envd does it: the destination's missing parents are created (0755, owned by the
 * requesting user), then one `rename(2)`, which replaces an existing file or empty directory and
 * fails across filesystems (FailedPrecondition, saying so).
 */
import { lstat, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import { isGone } from "./entry-info.ts";
import { ensureDirs, type Owner } from "./make-dir.ts";

export async function move(source: string, destination: string, owner: Owner): Promise<void> {
  try {
    await lstat(source);
  } catch (err) {
    if (isGone(err)) throw new EnvdError(Code.NotFound, `source file not found: ${source}`, { cause: err });
    throw fromNodeError(err, `cannot move ${source}`);
  }
  await ensureDirs(dirname(destination), owner);
  try {
    await rename(source, destination);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const what = `cannot move ${source} to ${destination}`;
    switch (code) {
      case "ENOENT":
        throw new EnvdError(Code.NotFound, `source file not found: ${source}`, { cause: err });
      case "EXDEV":
        throw new EnvdError(Code.FailedPrecondition, `${what}: they are on different filesystems`, { cause: err });
      case "ENOTEMPTY":
      case "EEXIST":
        throw new EnvdError(Code.FailedPrecondition, `${what}: the destination is a directory that is not empty`, { cause: err });
      case "EISDIR":
        throw new EnvdError(Code.InvalidArgument, `${what}: the destination is a directory and the source is not`, { cause: err });
      case "ENOTDIR":
        throw new EnvdError(Code.InvalidArgument, `${what}: the source is a directory and the destination is not`, { cause: err });
      case "EINVAL":
        throw new EnvdError(Code.InvalidArgument, `${what}: cannot move a directory into itself`, { cause: err });
      case "EBUSY":
        throw new EnvdError(Code.FailedPrecondition, `${what}: the path is in use (a mount point?)`, { cause: err });
      default:
        throw fromNodeError(err, what);
    }
  }
}
