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
      sandboxId: undefined,
      templateId: undefined,
      proxyDomain: undefined,
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
    ['{"timestamp":true}', /timestamp must be an RFC 3339 string or seconds since the epoch/],
    ['{"timestamp":-5}', /timestamp is not a valid time/],
    ['{"timestamp":"12345.1234567891"}', /not a valid RFC 3339/],
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

test("Wrenn's snake_case spelling: the same fields, plus the sandbox identity", () => {
  const r = parseInitBody(
    JSON.stringify({
      timestamp: "2026-12-02T10:00:00.123456789Z",
      lifecycle_id: "8c6a3f5e-0000-4000-8000-000000000001",
      access_token: "tok",
      hyperloop_ip: "10.0.0.9",
      volume_mounts: [{ nfs_target: "10.0.0.2:/v", path: "/mnt/v" }],
      sandbox_id: "sb-abc123",
      template_id: "tpl-9",
      proxy_domain: "wrenn.example.dev",
      defaultUser: "user",
      envVars: { A: "1" },
    }),
  );
  assert.equal(r.timestampNs, BigInt(Date.UTC(2026, 11, 2, 10)) * 1_000_000n + 123_456_789n);
  assert.equal(r.lifecycleID, "8c6a3f5e-0000-4000-8000-000000000001");
  assert.equal(r.accessToken, "tok");
  assert.equal(r.hyperloopIP, "10.0.0.9");
  assert.deepEqual(r.volumeMounts, [{ nfsTarget: "10.0.0.2:/v", path: "/mnt/v" }]);
  assert.equal(r.sandboxId, "sb-abc123");
  assert.equal(r.templateId, "tpl-9");
  assert.equal(r.proxyDomain, "wrenn.example.dev");
  assert.equal(r.defaultUser, "user");
  // Both spellings with the same value are fine; empty ids mean not given.
  assert.equal(parseInitBody('{"lifecycleID":"a","lifecycle_id":"a"}').lifecycleID, "a");
  const blank = parseInitBody('{"sandbox_id":"","template_id":null,"proxy_domain":"","lifecycle_id":""}');
  assert.deepEqual([blank.sandboxId, blank.templateId, blank.proxyDomain, blank.lifecycleID], [undefined, undefined, undefined, undefined]);
});

test("timestamp as seconds since the epoch: a JSON number or a decimal string, exact to the nanosecond", () => {
  assert.equal(parseInitBody('{"timestamp":1764669600.5}').timestampNs, 1_764_669_600_500_000_000n);
  assert.equal(parseInitBody('{"timestamp":"1764669600.123456789"}').timestampNs, 1_764_669_600_123_456_789n);
  assert.equal(parseInitBody('{"timestamp":1764669600}').timestampNs, 1_764_669_600_000_000_000n);
  assert.equal(parseInitBody('{"timestamp":1e9}').timestampNs, 1_000_000_000_000_000_000n);
});

test("snake_case bad input names the snake_case field", () => {
  const cases: [string, RegExp][] = [
    ['{"access_token":5}', /access_token must be a string/],
    ['{"hyperloop_ip":"x"}', /hyperloop_ip is not an IP address/],
    ['{"volume_mounts":{}}', /volume_mounts must be an array/],
    ['{"volume_mounts":[{"nfs_target":"h:/x","path":"rel"}]}', /volume_mounts\[0\]\.path must be an absolute path/],
    ['{"lifecycle_id":7}', /lifecycle_id must be a string/],
    ['{"sandbox_id":5}', /sandbox_id must be a string/],
    ['{"sandbox_id":"a/b"}', /sandbox_id is not a valid id/],
    ['{"template_id":"a b"}', /template_id is not a valid id/],
    ['{"sandbox_id":"x\\u0001"}', /sandbox_id is not a valid id/],
    ['{"proxy_domain":"-bad-.dev"}', /proxy_domain is not a host name/],
    ['{"proxy_domain":"a/b"}', /proxy_domain is not a host name/],
    ['{"accessToken":"a","access_token":"b"}', /accessToken and access_token are both given, with different values/],
    ['{"lifecycleID":"a","lifecycle_id":"b"}', /both given/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseInitBody(text), message, text);
  }
});
