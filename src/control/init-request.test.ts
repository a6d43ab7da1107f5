import assert from "node:assert/strict";
import { test } from "node:test";
import { parseInitBody } from "./init-request.ts";

test("an empty body, whitespace, {} and null all mean: nothing given", () => {
  for (const text of ["", "  \n", "{}", "null"]) {
    const r = parseInitBody(text);
    assert.deepEqual(r, {
      envVars: undefined,
      accessToken: undefined,
      timestampNs: undefined,
      defaultUser: undefined,
      defaultWorkdir: undefined,
      hyperloopIP: undefined,
      volumeMounts: undefined,
      lifecycleID: undefined,
      caBundle: undefined,
    });
  }
});

test("every field is parsed; unknown fields are ignored; empty strings mean not given", () => {
  const r = parseInitBody(
    JSON.stringify({
      envVars: { A: "1", B: "" },
      accessToken: "tok",
      timestamp: "2026-05-01T12:00:00.000000001Z",
      defaultUser: "user",
      defaultWorkdir: "/home/user/../app/",
      hyperloopIP: "fd00::1",
      volumeMounts: [{ nfs_target: "10.0.0.2:/vol-1", path: "/mnt/data/", extra: 1 }],
      lifecycleID: "life-1",
      caBundle: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
      somethingNew: true,
    }),
  );
  assert.deepEqual([...(r.envVars ?? [])], [
    ["A", "1"],
    ["B", ""],
  ]);
  assert.equal(r.accessToken, "tok");
  assert.equal(r.timestampNs, BigInt(Date.UTC(2026, 4, 1, 12)) * 1_000_000n + 1n);
  assert.equal(r.defaultUser, "user");
  assert.equal(r.defaultWorkdir, "/home/app");
  assert.equal(r.hyperloopIP, "fd00::1");
  assert.deepEqual(r.volumeMounts, [{ nfsTarget: "10.0.0.2:/vol-1", path: "/mnt/data" }]);
  assert.equal(r.lifecycleID, "life-1");
  const blank = parseInitBody(JSON.stringify({ defaultUser: "", defaultWorkdir: "", hyperloopIP: "", caBundle: "" }));
  assert.equal(blank.defaultUser, undefined);
  assert.equal(blank.defaultWorkdir, undefined);
  assert.equal(blank.hyperloopIP, undefined);
  assert.equal(blank.caBundle, undefined);
  assert.deepEqual(parseInitBody('{"envVars":{}}').envVars, new Map());
});

test("bad input is refused with a message naming the field", () => {
  const cases: [string, RegExp][] = [
    ["{", /invalid JSON body/],
    ["[]", /JSON object/],
    ['"x"', /JSON object/],
    ['{"envVars":[]}', /envVars must be an object/],
    ['{"envVars":{"A":1}}', /envVars.A must be a string/],
    ['{"envVars":{"A=B":"x"}}', /invalid variable name/],
    ['{"envVars":{"":"x"}}', /invalid variable name/],
    ['{"envVars":{"A":"x\\u0000y"}}', /NUL/],
    ['{"accessToken":5}', /accessToken must be a string/],
    ['{"accessToken":""}', /accessToken is not a valid token/],
    ['{"accessToken":"a\\\\b"}', /accessToken is not a valid token/],
    ['{"timestamp":12345}', /timestamp must be an RFC 3339 string/],
    ['{"timestamp":"yesterday"}', /not a valid RFC 3339/],
    ['{"defaultUser":true}', /defaultUser must be a string/],
    ['{"defaultUser":"a:b"}', /not a valid user name/],
    ['{"defaultWorkdir":"relative/dir"}', /absolute path/],
    ['{"hyperloopIP":"nope"}', /not an IP address/],
    ['{"caBundle":"garbage"}', /PEM/],
    ['{"lifecycleID":7}', /lifecycleID must be a string/],
    ['{"volumeMounts":{}}', /must be an array/],
    ['{"volumeMounts":[1]}', /must be an object/],
    ['{"volumeMounts":[{"nfs_target":"-oexec:/x","path":"/mnt/x"}]}', /host:\/export/],
    ['{"volumeMounts":[{"nfs_target":"nohostpath","path":"/mnt/x"}]}', /host:\/export/],
    ['{"volumeMounts":[{"nfs_target":"h:/x","path":"mnt/x"}]}', /absolute path/],
    ['{"volumeMounts":[{"nfs_target":"h:/x","path":"/"}]}', /must not be \//],
    ['{"volumeMounts":[{"nfs_target":"h:/x","path":"/m"},{"nfs_target":"h:/y","path":"/m/"}]}', /given twice/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseInitBody(text), message, text);
  }
});
