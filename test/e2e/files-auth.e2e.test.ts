import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { computeSignature } from "../../src/transfer/signing.ts";
import { createUser, jsonOf, multipartBody, type TestUser, tempDir } from "./files-fixtures.ts";
import { type Daemon, isRoot, RUNTIMES, startDaemon } from "./harness.ts";

const TOKEN = "files-test-token-0123";
const OCTET = { "content-type": "application/octet-stream" } as const;

/** A /files URL signed as the e2b SDK signs it (raw path and username, "" when absent). */
function signed(
  op: "read" | "write",
  params: { path?: string; username?: string },
  o: { token?: string; expiresIn?: number; expiration?: number } = {},
): string {
  const expiration =
    o.expiration !== undefined ? BigInt(o.expiration) : o.expiresIn !== undefined ? BigInt(Math.floor(Date.now() / 1000) + o.expiresIn) : undefined;
  const signature = computeSignature({
    path: params.path ?? "",
    operation: op,
    username: params.username ?? "",
    token: o.token ?? TOKEN,
    expiration,
  });
  const q = new URLSearchParams();
  if (params.username !== undefined) q.set("username", params.username);
  if (params.path !== undefined) q.set("path", params.path);
  q.set("signature", signature);
  if (expiration !== undefined) q.set("signature_expiration", expiration.toString());
  return `/files?${q}`;
}

for (const runtime of RUNTIMES) {
  describe(`/files access control and compose [${runtime}]`, { skip: !isRoot && "needs root (useradd)" }, () => {
    let envd: Daemon;
    let user: TestUser;
    let dir: { path: string } & Disposable;
    let file: string;

    before(async () => {
      envd = await startDaemon({ runtime });
      user = createUser();
      dir = tempDir();
      file = join(dir.path, "s.txt");
      writeFileSync(file, "secret");
    });
    after(async () => {
      await envd?.[Symbol.asyncDispose]();
      user?.[Symbol.dispose]();
      dir?.[Symbol.dispose]();
    });

    test("without a token /files needs no header or signature; a bad signature_expiration is still 400", async () => {
      const res = await envd.fetch(`/files?path=${encodeURIComponent(file)}`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "secret");
      const junk = await envd.fetch(`/files?path=${encodeURIComponent(file)}&signature=v1_whatever`);
      assert.equal(junk.status, 200);
      await junk.body?.cancel();
      const bad = await jsonOf(await envd.fetch(`/files?path=${encodeURIComponent(file)}&signature_expiration=soon`));
      assert.equal(bad.status, 400);
    });

    test("compose without a token: concatenates in order, owner is the user, sources removed", async () => {
      const parts = ["a", "b", "c"].map((n, i) => {
        const p = join(dir.path, `part-${n}`);
        writeFileSync(p, `${n.repeat(3)}${i}`);
        return p;
      });
      const destination = join(dir.path, "composed", "whole.txt");
      const r = await jsonOf(
        await envd.fetch("/files/compose", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ source_paths: parts, destination, username: user.name }),
        }),
      );
      assert.equal(r.status, 200);
      assert.equal(r.contentType, "application/json");
      assert.deepEqual(r.body, { path: destination, name: "whole.txt", type: "file" });
      assert.equal(readFileSync(destination, "utf8"), "aaa0bbb1ccc2");
      assert.equal(statSync(destination).uid, user.uid);
      assert.equal(statSync(join(dir.path, "composed")).uid, user.uid);
      for (const p of parts) assert.equal(existsSync(p), false);
    });

    test("compose errors: bad JSON, empty list, no destination, source = destination, missing, directory, unknown user", async () => {
      const src = join(dir.path, "c-src");
      writeFileSync(src, "x");
      const compose = async (body: unknown) =>
        jsonOf(
          await envd.fetch("/files/compose", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: typeof body === "string" ? body : JSON.stringify(body),
          }),
        );
      const dest = join(dir.path, "c-dest");
      const cases: [unknown, number, RegExp][] = [
        ["{not json", 400, /invalid request body/],
        [[1, 2], 400, /invalid request body/],
        [{ source_paths: [], destination: dest }, 400, /source_paths must not be empty/],
        [{ source_paths: [src] }, 400, /destination is required/],
        [{ source_paths: [src, 3], destination: dest }, 400, /invalid request body/],
        [{ source_paths: [src, dest], destination: dest }, 400, /cannot be the same as destination/],
        [{ source_paths: [join(dir.path, "missing")], destination: dest }, 404, /source file not found/],
        [{ source_paths: [dir.path], destination: dest }, 400, /not a regular file/],
        [{ source_paths: [src], destination: dest, username: "no-such-user-xyz" }, 401, /error looking up user/],
      ];
      for (const [body, status, message] of cases) {
        const r = await compose(body);
        assert.equal(r.status, status, JSON.stringify(body));
        assert.match((r.body as { message: string }).message, message);
      }
      assert.equal(existsSync(dest), false);
      assert.equal(readFileSync(src, "utf8"), "x");
    });

    test("the default user and workdir come from /init: owner, relative paths (home), empty path (workdir)", async () => {
      const workdir = join(dir.path, "workdir");
      mkdirSync(workdir);
      const init = await envd.fetch("/init", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ defaultUser: user.name, defaultWorkdir: workdir }),
      });
      assert.equal(init.status, 204);
      const r = await jsonOf(await envd.fetch("/files?path=rel%2Fdefault.txt", { method: "POST", body: "d", headers: OCTET }));
      assert.deepEqual(r.body, [{ path: join(user.home, "rel", "default.txt"), name: "default.txt", type: "file" }]);
      assert.equal(statSync(join(user.home, "rel", "default.txt")).uid, user.uid);
      assert.equal(statSync(join(user.home, "rel")).uid, user.uid);
      const empty = await jsonOf(await envd.fetch("/files"));
      assert.deepEqual(empty.body, { code: 400, message: `path '${workdir}' is a directory` });
      // An explicit username still wins.
      const asRoot = await jsonOf(await envd.fetch(`/files?path=${encodeURIComponent(join(dir.path, "as-root.txt"))}&username=root`, { method: "POST", body: "r", headers: OCTET }));
      assert.equal(asRoot.status, 200);
      assert.equal(statSync(join(dir.path, "as-root.txt")).uid, 0);
    });

    test("after /init sets a token: header, signed URLs, and every way of getting it wrong", async () => {
      const init = await envd.fetch("/init", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ accessToken: TOKEN }),
      });
      assert.equal(init.status, 204);

      const path = file;
      // No header, no signature.
      const none = await jsonOf(await envd.fetch(`/files?path=${encodeURIComponent(path)}`));
      assert.deepEqual(none.body, { code: 401, message: "missing signature query parameter" });
      // The header alone.
      const withHeader = await envd.fetch(`/files?path=${encodeURIComponent(path)}`, { headers: { "X-Access-Token": TOKEN } });
      assert.equal(await withHeader.text(), "secret");
      // A valid signature without expiration, username absent (signed as "").
      const sig = await envd.fetch(signed("read", { path }));
      assert.equal(sig.status, 200);
      assert.equal(await sig.text(), "secret");
      // A wrong header wins over a valid signature.
      const wrongHeader = await jsonOf(await envd.fetch(signed("read", { path }), { headers: { "X-Access-Token": "nope" } }));
      assert.deepEqual(wrongHeader.body, { code: 401, message: "access token present in header but does not match" });
      // Forgeries.
      for (const url of [
        signed("write", { path }),
        signed("read", { path: `${path}x` }).replace(encodeURIComponent(`${path}x`), encodeURIComponent(path)),
        signed("read", { path }, { token: "guessed" }),
        signed("read", { path, username: "root" }).replace("username=root", `username=${user.name}`),
        `${signed("read", { path })}A`,
        `/files?path=${encodeURIComponent(path)}&signature=v1_`,
      ]) {
        const r = await jsonOf(await envd.fetch(url));
        assert.deepEqual(r.body, { code: 401, message: "invalid signature" }, url);
      }
      // With a username.
      const asUser = await envd.fetch(signed("read", { path, username: user.name }));
      assert.equal(asUser.status, 200);
      await asUser.body?.cancel();
      // Expiration: in the future → OK; past → expired; tampered expiration → invalid.
      const fresh = await envd.fetch(signed("read", { path }, { expiresIn: 120 }));
      assert.equal(fresh.status, 200);
      await fresh.body?.cancel();
      const expired = await jsonOf(await envd.fetch(signed("read", { path }, { expiresIn: -10 })));
      assert.deepEqual(expired.body, { code: 401, message: "signature is already expired" });
      const tampered = signed("read", { path }, { expiresIn: -10 }).replace(/signature_expiration=\d+/, `signature_expiration=${Math.floor(Date.now() / 1000) + 3600}`);
      assert.deepEqual((await jsonOf(await envd.fetch(tampered))).body, { code: 401, message: "invalid signature" });
      // Unknown user behind a valid signature → 401 from the user lookup.
      const ghost = await jsonOf(await envd.fetch(signed("read", { path, username: "no-such-user-xyz" })));
      assert.equal(ghost.status, 401);
      assert.match((ghost.body as { message: string }).message, /error looking up user/);

      // Uploads: a write signature works for POST, a read signature does not.
      const target = join(dir.path, "signed-upload.txt");
      const up = await envd.fetch(signed("write", { path: target, username: user.name }), { method: "POST", body: "via signature", headers: OCTET });
      assert.equal(up.status, 200);
      await up.body?.cancel();
      assert.equal(readFileSync(target, "utf8"), "via signature");
      assert.equal(statSync(target).uid, user.uid);
      const readSigOnPost = await jsonOf(await envd.fetch(signed("read", { path: target }), { method: "POST", body: "x", headers: OCTET }));
      assert.deepEqual(readSigOnPost.body, { code: 401, message: "invalid signature" });
      const { body, contentType } = multipartBody([{ name: "file", filename: target, data: "nope" }]);
      const unsignedPost = await jsonOf(await envd.fetch(`/files?path=${encodeURIComponent(target)}`, { method: "POST", body, headers: { "content-type": contentType } }));
      assert.equal(unsignedPost.status, 401);
      assert.equal(readFileSync(target, "utf8"), "via signature");

      // Compose is behind the token gate.
      writeFileSync(join(dir.path, "g1"), "1");
      const gated = await jsonOf(
        await envd.fetch("/files/compose", { method: "POST", body: JSON.stringify({ source_paths: [join(dir.path, "g1")], destination: join(dir.path, "g") }) }),
      );
      assert.equal(gated.status, 401);
      const allowed = await envd.fetch("/files/compose", {
        method: "POST",
        headers: { "X-Access-Token": TOKEN },
        body: JSON.stringify({ source_paths: [join(dir.path, "g1")], destination: join(dir.path, "g") }),
      });
      assert.equal(allowed.status, 200);
      await allowed.body?.cancel();
      assert.equal(readFileSync(join(dir.path, "g"), "utf8"), "1");
    });

    test("the e2b SDK with envdAccessToken: files.read/write, and its signed download/upload URLs", async () => {
      // The token was set by the previous test's /init.
      const sbx = await envd.sandbox({ envdAccessToken: TOKEN });
      const target = join(dir.path, "sdk-token.txt");
      await sbx.files.write(target, "written with the token");
      assert.equal(await sbx.files.read(target), "written with the token");

      const downloadUrl = await sbx.downloadUrl(target);
      const d = await fetch(downloadUrl);
      assert.equal(d.status, 200);
      assert.equal(await d.text(), "written with the token");
      const expiring = await sbx.downloadUrl(target, { useSignatureExpiration: 60 });
      assert.match(expiring, /signature_expiration=\d+/);
      assert.equal(await (await fetch(expiring)).text(), "written with the token");
      const asUser = await sbx.downloadUrl(target, { user: user.name });
      assert.equal((await fetch(asUser)).status, 200);

      const uploadTarget = join(dir.path, "sdk-upload-url.txt");
      const uploadUrl = await sbx.uploadUrl(uploadTarget, { user: user.name, useSignatureExpiration: 60 });
      const form = new FormData();
      form.append("file", new Blob(["through the upload URL"]), uploadTarget);
      const u = await fetch(uploadUrl, { method: "POST", body: form });
      assert.equal(u.status, 200);
      assert.equal(readFileSync(uploadTarget, "utf8"), "through the upload URL");
      assert.equal(statSync(uploadTarget).uid, user.uid);

      const wrong = await envd.sandbox({ envdAccessToken: "not-the-token" });
      await assert.rejects(wrong.files.read(target), (err: Error) => {
        assert.equal(err.constructor.name, "AuthenticationError");
        return true;
      });
    });
  });
}
