import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { EnvdError, fromNodeError } from "../errors.ts";
import { Filesystem } from "../gen/filesystem/filesystem_pb.js";
import { createLogger } from "../log.ts";
import { errorInterceptor, rpcErrorGate } from "./error-interceptor.ts";

function setup(stat: () => never) {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger("debug", (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const transport = createRouterTransport(
    (router) => {
      router.service(Filesystem, { stat } as never);
    },
    { router: { interceptors: [errorInterceptor()], requestGate: rpcErrorGate(log) } },
  );
  return { client: createClient(Filesystem, transport), lines };
}

test("an internal error keeps its message for the client and is logged once with the cause chain", async () => {
  const eio = Object.assign(new Error("EIO: i/o error, stat '/x'"), { code: "EIO", errno: -5, syscall: "stat", path: "/x" });
  const { client, lines } = setup(() => {
    throw fromNodeError(eio, "error getting file info of '/x'");
  });
  const err = await client.stat({ path: "/x" }).catch((e: unknown) => e);
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.Internal);
  const errors = lines.filter((l) => l.level === "error");
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.method, "filesystem.Filesystem/Stat");
  assert.deepEqual((errors[0]?.err as { cause: unknown } | undefined)?.cause, { message: eio.message, code: "EIO", errno: -5, syscall: "stat", path: "/x" });
});

test("a bug (not a ConnectError) reaches the client as 'internal error' and the log with the original", async () => {
  const { client, lines } = setup(() => {
    throw new TypeError("cannot read properties of undefined");
  });
  const err = await client.stat({ path: "/x" }).catch((e: unknown) => e);
  assert.ok(err instanceof ConnectError);
  assert.equal(err.code, Code.Internal);
  assert.equal(err.rawMessage, "internal error");
  const logged = lines.find((l) => l.level === "error")?.err as { cause: { name: string; message: string } };
  assert.equal(logged.cause.name, "TypeError");
  assert.match(logged.cause.message, /cannot read properties/);
});

test("client mistakes are not logged as errors", async () => {
  const { client, lines } = setup(() => {
    throw new EnvdError(Code.NotFound, "no such file");
  });
  await client.stat({ path: "/x" }).catch(() => {});
  assert.deepEqual(lines.filter((l) => l.level === "error"), []);
});
