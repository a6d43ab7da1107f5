/**
 * The Process service at its seam: real Connect (createRouterTransport, no sockets) in front of a
 * fake ProcessManager and table, so validation, error mapping and message shapes are tested
 * without spawning anything.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { EnvdError } from "../errors.ts";
import { Process, Signal } from "../gen/process/process_pb.js";
import type { ProcessManager } from "../process/process-manager.ts";
import type { Selector } from "../process/process-table.ts";
import { Session } from "../session.ts";
import type { User, UserDb } from "../users/user-db.ts";
import { createProcessService } from "./process-service.ts";

const root: User = { name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/sh", groups: [0] } as unknown as User;

function fixture() {
  const calls: string[] = [];
  const handle = {
    pid: 42,
    tag: "web",
    config: { cmd: "/bin/sleep", args: ["9"], envs: { A: "1" }, cwd: undefined },
    resize: (cols: number, rows: number) => void calls.push(`resize ${cols}x${rows}`),
  };
  const lookup = (sel: Selector) => {
    if (("pid" in sel && sel.pid === 42) || ("tag" in sel && sel.tag === "web")) return handle;
    throw new EnvdError(Code.NotFound, "pid" in sel ? `process with pid ${sel.pid} not found` : `process with tag ${sel.tag} not found`);
  };
  const processes = {
    table: { list: () => [handle], find: lookup, findLive: lookup },
    start: async () => {
      calls.push("start");
      throw new EnvdError(Code.InvalidArgument, "fake: not started");
    },
  } as unknown as ProcessManager;
  const users = { lookup: (name: string) => (name === "root" ? root : undefined) } as unknown as UserDb;
  const transport = createRouterTransport((router) => {
    router.service(Process, createProcessService({ processes, users, session: new Session() }));
  });
  return { client: createClient(Process, transport), calls };
}

async function codeOf(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

describe("Process service through createRouterTransport", () => {
  test("List answers each live process with its pid, tag and config", async () => {
    const { client } = fixture();
    const res = await client.list({});
    assert.equal(res.processes.length, 1);
    const p = res.processes[0];
    assert.equal(p?.pid, 42);
    assert.equal(p?.tag, "web");
    assert.deepEqual({ cmd: p?.config?.cmd, args: p?.config?.args, envs: p?.config?.envs, cwd: p?.config?.cwd }, {
      cmd: "/bin/sleep",
      args: ["9"],
      envs: { A: "1" },
      cwd: undefined,
    });
  });

  test("an empty selector is InvalidArgument and an unknown one NotFound, for every RPC that takes one", async () => {
    const { client } = fixture();
    assert.equal(await codeOf(client.sendSignal({ signal: Signal.SIGTERM })), Code.InvalidArgument);
    assert.equal(await codeOf(client.update({})), Code.InvalidArgument);
    assert.equal(await codeOf(client.closeStdin({})), Code.InvalidArgument);
    const ghost = { process: { selector: { case: "pid" as const, value: 7 } } };
    assert.equal(await codeOf(client.sendSignal({ ...ghost, signal: Signal.SIGKILL })), Code.NotFound);
    assert.equal(await codeOf(client.update(ghost)), Code.NotFound);
    const err = await client.closeStdin({ process: { selector: { case: "tag", value: "nope" } } }).catch((e: unknown) => ConnectError.from(e));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.rawMessage, "process with tag nope not found");
  });

  test("Update without a pty is a no-op; with one it resizes", async () => {
    const { client, calls } = fixture();
    const sel = { process: { selector: { case: "tag" as const, value: "web" } } };
    await client.update(sel);
    assert.deepEqual(calls, []);
    await client.update({ ...sel, pty: { size: { cols: 120, rows: 40 } } });
    assert.deepEqual(calls, ["resize 120x40"]);
  });

  test("Start as an unknown Basic-auth user is Unauthenticated and never reaches the manager", async () => {
    const { client, calls } = fixture();
    const stream = client.start(
      { process: { cmd: "/bin/true" } },
      { headers: { authorization: `Basic ${Buffer.from("ghost:").toString("base64")}` } },
    );
    const err = await (async () => {
      for await (const _ of stream) {
        // no message may arrive before the error
        return undefined;
      }
      return undefined;
    })().catch((e: unknown) => ConnectError.from(e));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(err.rawMessage, "invalid username: 'ghost'");
    assert.deepEqual(calls, []);
  });

  test("a domain error from Start keeps its code and message on the stream", async () => {
    const { client, calls } = fixture();
    const err = await (async () => {
      for await (const _ of client.start({ process: { cmd: "/bin/true" } })) return undefined;
      return undefined;
    })().catch((e: unknown) => ConnectError.from(e));
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.rawMessage, "fake: not started");
    assert.deepEqual(calls, ["start"]);
  });
});
