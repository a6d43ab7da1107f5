import assert from "node:assert/strict";
import { test } from "node:test";
import { goFileModeText, permissionBits } from "./file-mode.ts";

test("goFileModeText prints Go's os.FileMode text", () => {
  const cases: [number, string][] = [
    [0o100644, "-rw-r--r--"],
    [0o100000, "----------"],
    [0o40755, "drwxr-xr-x"],
    [0o41777, "dtrwxrwxrwx"],
    [0o120777, "Lrwxrwxrwx"],
    [0o20666, "Dcrw-rw-rw-"],
    [0o60660, "Drw-rw----"],
    [0o10644, "prw-r--r--"],
    [0o140755, "Srwxr-xr-x"],
    [0o104755, "urwxr-xr-x"],
    [0o102755, "grwxr-xr-x"],
    [0o42775, "dgrwxrwxr-x"],
    [0o106755, "ugrwxr-xr-x"],
    [0o000644, "?rw-r--r--"],
  ];
  for (const [mode, text] of cases) assert.equal(goFileModeText(mode), text, mode.toString(8));
});

test("permissionBits keeps only rwx bits", () => {
  assert.equal(permissionBits(0o104755), 0o755);
  assert.equal(permissionBits(0o41777), 0o777);
});
