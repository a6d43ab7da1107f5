/**
 * The small files under the run dir (`/run/e2b`, Wrenn: `/run/wrenn`) that tell programs in the
 * sandbox where they are: `.E2B_SANDBOX` ("true" in Firecracker, "false" with -isnotfc, 0444),
 * `.E2B_SANDBOX_ID` and `.E2B_TEMPLATE_ID` (0666).
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Writes `<dir>/<name>` with exactly `mode` (not masked by umask); replaces a read-only file. */
export function writeRunFile(dir: string, name: string, content: string, mode: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, name);
  rmSync(path, { force: true });
  writeFileSync(path, content, { mode });
  chmodSync(path, mode);
}

/** The boot marker: `<dir>/.<sandboxVar>` holding "true" or "false". */
export function writeBootMarker(dir: string, sandboxVar: string, inFirecracker: boolean): void {
  writeRunFile(dir, `.${sandboxVar}`, String(inFirecracker), 0o444);
}
