import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CaInstaller } from "./ca-bundle.ts";

const pem = (n: string) => `-----BEGIN CERTIFICATE-----\n${n}\n-----END CERTIFICATE-----`;

test("install appends once, rotates the previous cert out, and persists the current one", () => {
  const dir = mkdtempSync(join(tmpdir(), "ca-"));
  const bundle = join(dir, "certs", "ca-certificates.crt");
  const cert = join(dir, "share", "e2b-ca.crt");
  const ca = new CaInstaller({ bundle, cert });
  // A missing bundle is created.
  ca.install(pem("ONE"));
  assert.equal(readFileSync(bundle, "utf8"), `${pem("ONE")}\n`);
  assert.equal(readFileSync(cert, "utf8"), `${pem("ONE")}\n`);

  writeFileSync(bundle, `${pem("SYSTEM")}`); // the system bundle, no trailing newline
  const ca2 = new CaInstaller({ bundle, cert });
  ca2.install(pem("ONE"));
  ca2.install(`${pem("ONE")}\r\n\n`); // same cert, other line ends: no second copy
  assert.equal(readFileSync(bundle, "utf8"), `${pem("SYSTEM")}\n${pem("ONE")}\n`);
  assert.equal(ca2.isCurrent(pem("ONE")), true);

  ca2.install(pem("TWO"));
  assert.equal(readFileSync(bundle, "utf8"), `${pem("SYSTEM")}\n${pem("TWO")}\n`);
  assert.equal(readFileSync(cert, "utf8"), `${pem("TWO")}\n`);
  assert.equal(statSync(bundle).mode & 0o777, 0o644);
});

test("an unwritable bundle is an error and nothing is recorded as installed", () => {
  const dir = mkdtempSync(join(tmpdir(), "ca-"));
  const blocker = join(dir, "file");
  writeFileSync(blocker, "");
  const ca = new CaInstaller({ bundle: join(blocker, "bundle.crt"), cert: join(dir, "c.crt") });
  assert.throws(() => ca.install(pem("ONE")), /installing the CA certificate/);
  assert.equal(ca.isCurrent(pem("ONE")), false);
});
