import assert from "node:assert/strict";
import { test } from "node:test";
import { lazyServices, type NodeHandler } from "./lazy-services.ts";

type Req = Parameters<NodeHandler>[0];

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
type Res = Parameters<NodeHandler>[1];

function fakeRes() {
  const headers: Record<string, string> = {};
  let body = "";
  const done = deferred();
  const res = {
    statusCode: 200,
    headersSent: false,
    setHeader: (k: string, v: string) => {
      headers[k.toLowerCase()] = v;
    },
    end: (b?: string) => {
      body = b ?? "";
      done.resolve();
    },
    destroy: () => done.resolve(),
  };
  return { res: res as unknown as Res, done: done.promise, headers, body: () => body, status: () => res.statusCode };
}

const req = (url: string) => ({ url }) as unknown as Req;

test("a service is loaded once, on its first request; requests during the load wait for it", async () => {
  let loads = 0;
  const gate = deferred();
  const rpc = lazyServices(
    [
      {
        prefix: "/a.A/",
        load: async () => {
          loads++;
          await gate.promise;
          return (_req, res) => {
            res.statusCode = 204;
            res.end();
          };
        },
      },
      { prefix: "/b.B/", load: () => Promise.reject(new Error("not this one")) },
    ],
    () => assert.fail("no load error expected"),
  );
  assert.deepEqual(rpc.loaded(), []);
  const first = fakeRes();
  const second = fakeRes();
  rpc.handle(req("/a.A/One"), first.res);
  rpc.handle(req("/a.A/Two"), second.res);
  gate.resolve();
  await Promise.all([first.done, second.done]);
  assert.equal(first.status(), 204);
  assert.equal(second.status(), 204);
  const third = fakeRes();
  rpc.handle(req("/a.A/One"), third.res);
  await third.done;
  assert.equal(third.status(), 204);
  assert.equal(loads, 1);
  assert.deepEqual(rpc.loaded(), ["/a.A/"]);
});

test("a failed load answers 500 internal (Connect error JSON) and is tried again on the next request", async () => {
  let attempts = 0;
  const errors: string[] = [];
  const rpc = lazyServices(
    [
      {
        prefix: "/a.A/",
        load: async () => {
          attempts++;
          if (attempts === 1) throw new Error("EMFILE");
          return (_req, res) => {
            res.statusCode = 200;
            res.end("ok");
          };
        },
      },
    ],
    (prefix, err) => errors.push(`${prefix} ${String(err)}`),
  );
  const failed = fakeRes();
  rpc.handle(req("/a.A/One"), failed.res);
  await failed.done;
  assert.equal(failed.status(), 500);
  assert.equal(failed.headers["content-type"], "application/json");
  assert.equal(JSON.parse(failed.body()).code, "internal");
  assert.deepEqual(errors, ["/a.A/ Error: EMFILE"]);
  const retried = fakeRes();
  rpc.handle(req("/a.A/One"), retried.res);
  await retried.done;
  assert.equal(retried.status(), 200);
  assert.equal(retried.body(), "ok");
  assert.equal(attempts, 2);
});
