/**
 * Remove as E2B envd does it: recursive, and a missing path is success (idempotent).
 */
import { rm } from "node:fs/promises";
import { fromNodeError } from "../errors.ts";

export async function remove(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true, maxRetries: 2 });
  } catch (err) {
    // A parent that is a file means the path cannot exist: nothing to remove.
    if ((err as NodeJS.ErrnoException).code === "ENOTDIR") return;
    throw fromNodeError(err, `cannot remove ${path}`);
  }
}
