/**
 * Installs /init's caBundle into the system trust store (docs/protocol.md §6.4), as E2B envd does:
 * append the PEM to the bundle unless it equals the last one installed, drop the previously
 * installed PEM from the bundle, and persist the new one where update-ca-certificates finds it.
 *
 * Unlike E2B envd the clean-up runs before /init answers (a bundle rewrite on tmpfs takes a few
 * milliseconds, and /init is serialised anyway), so the bundle is final when the host sees 204. A
 * missing bundle file is created rather than failing /init: minimal images ship without one.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fromNodeError } from "../errors.ts";
import type { Logger } from "../log.ts";

export interface CaPaths {
  bundle: string;
  cert: string;
}

export class CaInstaller {
  readonly #paths: CaPaths;
  readonly #log: Logger | undefined;
  /** The PEM installed last (normalised), or undefined since start. */
  #last: string | undefined;

  constructor(paths: CaPaths, log?: Logger) {
    this.#paths = paths;
    this.#log = log;
  }

  /** Whether `pem` is what the last install put in place (a resend is then a no-op). */
  isCurrent(pem: string): boolean {
    return this.#last === normalise(pem);
  }

  /** Appends `pem` to the bundle and persists it. Throws EnvdError when the bundle cannot be written. */
  install(pem: string): void {
    const cert = normalise(pem);
    if (this.#last === cert) return;
    const { bundle } = this.#paths;
    try {
      mkdirSync(dirname(bundle), { recursive: true });
      let current = "";
      try {
        current = readFileSync(bundle, "utf8");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
      const previous = this.#last;
      if (previous !== undefined && current.includes(previous)) {
        // Rewrite without the old certificate, with the new one at the end: atomic via rename.
        let cleaned = current.replaceAll(previous, "");
        if (cleaned !== "" && !cleaned.endsWith("\n")) cleaned += "\n";
        const tmp = join(dirname(bundle), `.ca-bundle.${process.pid}.${Date.now()}.tmp`);
        try {
          writeFileSync(tmp, cleaned + cert, { mode: 0o644 });
          chmodSync(tmp, 0o644);
          renameSync(tmp, bundle);
        } finally {
          rmSync(tmp, { force: true });
        }
      } else {
        const sep = current !== "" && !current.endsWith("\n") ? "\n" : "";
        appendFileSync(bundle, sep + cert, { mode: 0o644 });
      }
    } catch (err) {
      throw fromNodeError(err, `installing the CA certificate into ${bundle}`);
    }
    this.#last = cert;
    try {
      mkdirSync(dirname(this.#paths.cert), { recursive: true });
      writeFileSync(this.#paths.cert, cert, { mode: 0o644 });
    } catch (err) {
      // The bundle already trusts it; the persisted copy only matters for a later rebuild.
      this.#log?.warn("could not persist the CA certificate", { path: this.#paths.cert, err: String(err) });
    }
  }
}

function normalise(pem: string): string {
  return `${pem.replace(/\r\n/g, "\n").replace(/\n+$/, "")}\n`;
}
