/**
 * The Process service at its seam: real Connect (createRouterTransport, no sockets) in front of a
 * fake ProcessManager and table, so validation, error mapping and message shapes are tested
 * without spawning anything. The streaming tests put a real OutputFanout behind a fake handle.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { EnvdError } from "../errors.ts";
import { type ConnectResponse, Process, Signal, type StartResponse, type StreamInputRequestSchema } from "../gen/process/process_pb.js";
import type { ExitStatus } from "../process/exit-status.ts";
import { EndedProcess } from "../process/ended-process.ts";
import { inputStateError } from "../process/input-error.ts";
import { OutputFanout } from "../process/output-fanout.ts";
import type { OutputOffsets, OutputStream } from "../process/output-history.ts";
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

/**
 * A fake handle over a real OutputFanout: the service's streams are driven by pushing output and
 * ending it, and its input calls are recorded (or refused as the real handle refuses them).
 */
function streamFixture(
  options: { history?: { stream: OutputStream; text: string }[]; ended?: boolean; historyBytes?: number; packed?: boolean } = {},
) {
  const fanout = new OutputFanout<ExitStatus>(options.historyBytes !== undefined ? { historyBytes: options.historyBytes } : {});
  for (const h of options.history ?? []) fanout.push(h.stream, Buffer.from(h.text));
  if (options.ended) fanout.end(EXIT_0);
  const writes: string[] = [];
  const subscribed: { replay: boolean; from: OutputOffsets | undefined }[] = [];
  let stdinOpen = true;
  const handle = {
    pid: 42,
    tag: "web",
    config: { cmd: "/bin/cat", args: [], envs: {}, cwd: undefined },
    subscribe: (replay: boolean, from?: OutputOffsets) => {
      subscribed.push({ replay, from });
      return fanout.subscribe(from ? { replay, from } : { replay });
    },
    writeStdin: async (data: Uint8Array) => {
      if (!stdinOpen) throw inputStateError("stdin-closed");
      writes.push(`stdin ${Buffer.from(data).toString()}`);
    },
    writePty: (_data: Uint8Array) => {
      throw inputStateError("no-pty");
    },
    closeStdin: () => {
      stdinOpen = false;
    },
  };
  // `packed`: the table's compact record of the ended process (what packEnded leaves) is found instead.
  const found = options.packed ? EndedProcess.of({ pid: 42, tag: "web", isPty: false, status: EXIT_0, output: fanout }) : handle;
  assert.ok(found, "an ended fanout with no reader packs");
  const lookup = (sel: Selector) => {
    if (("pid" in sel && sel.pid === 42) || ("tag" in sel && sel.tag === "web")) return found;
    throw new EnvdError(Code.NotFound, "pid" in sel ? `process with pid ${sel.pid} not found` : `process with tag ${sel.tag} not found`);
  };
  const processes = {
    table: { list: () => [handle], find: lookup, findLive: lookup },
    start: async () => handle,
  } as unknown as ProcessManager;
  const users = { lookup: (name: string) => (name === "root" ? root : undefined) } as unknown as UserDb;
  const transport = createRouterTransport((router) => {
    router.service(Process, createProcessService({ processes, users, session: new Session() }));
  });
  return { client: createClient(Process, transport), fanout, writes, subscribed };
}

const EXIT_0: ExitStatus = { exitCode: 0, exited: true, status: "exit status 0", error: undefined };

/** A ProcessEvent as a plain value: its case and the fields a client reads. */
function shapeOf(res: StartResponse | ConnectResponse): unknown {
  const e = res.event?.event;
  switch (e?.case) {
    case "start":
      return { start: { pid: e.value.pid, offsets: offsetsOfEvent(e.value.offsets) } };
    case "data": {
      const out = e.value.output;
      return { data: { stream: out.case, offset: Number(e.value.offset), text: Buffer.from(out.value ?? []).toString() } };
    }
    case "end":
      return { end: { exitCode: e.value.exitCode, exited: e.value.exited, status: e.value.status } };
    default:
      return { other: e?.case };
  }
}

function offsetsOfEvent(o: { stdout: bigint; stderr: bigint; pty: bigint } | undefined) {
  return o ? { stdout: Number(o.stdout), stderr: Number(o.stderr), pty: Number(o.pty) } : undefined;
}

async function collect(stream: AsyncIterable<StartResponse | ConnectResponse>, onStart?: () => void): Promise<unknown[]> {
  const events: unknown[] = [];
  for await (const res of stream) {
    events.push(shapeOf(res));
    if (res.event?.event.case === "start") onStart?.();
  }
  return events;
}

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  assert.ok(err instanceof ConnectError, "expected the call to fail");
  return err;
}

const ZERO = { stdout: 0, stderr: 0, pty: 0 };

describe("Process service streams and input through createRouterTransport", () => {
  test("Start streams start, then each stream's data with its offsets, then end, in order", async () => {
    const { client, fanout, subscribed } = streamFixture();
    const events = await collect(client.start({ process: { cmd: "/bin/cat" } }), () => {
      // Output produced after the start event: the Start stream subscribed at the current end.
      fanout.push("stdout", Buffer.from("hello\n"));
      fanout.push("stderr", Buffer.from("oops"));
      fanout.push("stdout", Buffer.from("bye"));
      fanout.end(EXIT_0);
    });
    assert.deepEqual(subscribed, [{ replay: false, from: undefined }]);
    assert.deepEqual(events, [
      { start: { pid: 42, offsets: ZERO } },
      { data: { stream: "stdout", offset: 0, text: "hello\n" } },
      { data: { stream: "stderr", offset: 0, text: "oops" } },
      { data: { stream: "stdout", offset: 6, text: "bye" } },
      { end: { exitCode: 0, exited: true, status: "exit status 0" } },
    ]);
    assert.equal(fanout.subscriberCount, 0, "the stream's subscription is disposed when it ends");
  });

  test("Connect replays the retained history, then the end", async () => {
    const { client, subscribed } = streamFixture({
      history: [
        { stream: "stdout", text: "abc" },
        { stream: "stderr", text: "de" },
      ],
      ended: true,
    });
    const events = await collect(client.connect({ process: { selector: { case: "tag", value: "web" } } }));
    assert.deepEqual(subscribed, [{ replay: true, from: undefined }]);
    assert.deepEqual(events, [
      { start: { pid: 42, offsets: ZERO } },
      { data: { stream: "stdout", offset: 0, text: "abc" } },
      { data: { stream: "stderr", offset: 0, text: "de" } },
      { end: { exitCode: 0, exited: true, status: "exit status 0" } },
    ]);
  });

  test("Connect passes resumeFrom through: the stream starts at those positions", async () => {
    const { client, subscribed, fanout } = streamFixture({
      history: [
        { stream: "stdout", text: "abc" },
        { stream: "stderr", text: "de" },
      ],
    });
    const events = await collect(
      client.connect({ process: { selector: { case: "pid", value: 42 } }, resumeFrom: { stdout: 1n, stderr: 2n, pty: 0n } }),
      () => {
        fanout.push("stderr", Buffer.from("f"));
        fanout.end(EXIT_0);
      },
    );
    assert.deepEqual(subscribed, [{ replay: true, from: { stdout: 1, stderr: 2, pty: 0 } }]);
    assert.deepEqual(events, [
      { start: { pid: 42, offsets: { stdout: 1, stderr: 2, pty: 0 } } },
      { data: { stream: "stdout", offset: 1, text: "bc" } },
      { data: { stream: "stderr", offset: 2, text: "f" } },
      { end: { exitCode: 0, exited: true, status: "exit status 0" } },
    ]);
  });

  test("Connect with resumeFrom beyond what was produced, or before what is retained, is out_of_range", async () => {
    const { client } = streamFixture({ history: [{ stream: "stdout", text: "abc" }], ended: true });
    const ahead = await errorOf(
      collect(client.connect({ process: { selector: { case: "pid", value: 42 } }, resumeFrom: { stdout: 4n, stderr: 0n, pty: 0n } })),
    );
    assert.equal(ahead.code, Code.OutOfRange);
    assert.equal(ahead.rawMessage, "cannot resume stdout at byte 4: the process has produced 3 bytes of stdout");

    // A history of one entry: the older entries are evicted, so byte 0 is gone.
    const small = streamFixture({
      history: [
        { stream: "stdout", text: "first" },
        { stream: "stdout", text: "x".repeat(MERGE_PAST_BYTES) },
        { stream: "stdout", text: "y".repeat(MERGE_PAST_BYTES) },
      ],
      historyBytes: 0,
      ended: true,
    });
    const evicted = await errorOf(
      collect(small.client.connect({ process: { selector: { case: "pid", value: 42 } }, resumeFrom: { stdout: 0n, stderr: 0n, pty: 0n } })),
    );
    assert.equal(evicted.code, Code.OutOfRange);
    assert.match(evicted.rawMessage, /^cannot resume stdout at byte 0: output before byte \d+ of stdout is no longer retained$/);
  });

  test("an ended process's packed record answers Connect (replay, resume, out of range) and input as its handle did", async () => {
    const history = [
      { stream: "stdout" as const, text: "first" },
      { stream: "stderr" as const, text: "e".repeat(MERGE_PAST_BYTES) },
      { stream: "stdout" as const, text: "x".repeat(MERGE_PAST_BYTES) },
      { stream: "stdout" as const, text: "tail" },
      { stream: "stderr" as const, text: "!" },
    ];
    const before = streamFixture({ history, ended: true, historyBytes: 40 << 10 });
    const after = streamFixture({ history, ended: true, historyBytes: 40 << 10, packed: true });
    const sel = { process: { selector: { case: "pid" as const, value: 42 } } };
    const stdoutProduced = 5 + MERGE_PAST_BYTES + 4;
    const requests = [
      sel,
      { ...sel, resumeFrom: { stdout: BigInt(stdoutProduced - 2), stderr: BigInt(MERGE_PAST_BYTES), pty: 0n } },
      { ...sel, resumeFrom: { stdout: BigInt(stdoutProduced), stderr: BigInt(MERGE_PAST_BYTES + 1), pty: 0n } },
      { ...sel, resumeFrom: { stdout: 0n, stderr: 0n, pty: 0n } }, // "first" was evicted: out_of_range
      { ...sel, resumeFrom: { stdout: BigInt(stdoutProduced + 1), stderr: 0n, pty: 0n } },
    ];
    const outcome = async (client: typeof before.client, req: (typeof requests)[number]) =>
      collect(client.connect(req)).then(
        (events) => events,
        (e: unknown) => `${ConnectError.from(e).code} ${ConnectError.from(e).rawMessage}`,
      );
    for (const req of requests) {
      const was = await outcome(before.client, req);
      assert.deepEqual(await outcome(after.client, req), was);
      assert.deepEqual(await outcome(after.client, req), was, "a second late reader gets the same");
    }
    // The first replay really was the retained output, not an empty or failed stream.
    const replay = (await outcome(after.client, sel)) as { data?: { text: string } }[];
    // (40 KiB of history: "first" and the stderr block were evicted before the end.)
    const replayed = replay.map((e) => e.data?.text ?? "").join("");
    assert.ok(replayed === `${"x".repeat(MERGE_PAST_BYTES)}tail!`, `replayed ${replayed.length} bytes: ${replayed.slice(0, 8)}…${replayed.slice(-8)}`);
    assert.equal(typeof (await outcome(after.client, requests[3] as (typeof requests)[number])), "string");

    for (const input of [
      { input: { case: "stdin" as const, value: Buffer.from("a") } },
      { input: { case: "pty" as const, value: Buffer.from("b") } },
    ]) {
      const err = await errorOf(after.client.sendInput({ ...sel, input }));
      assert.equal(err.code, Code.FailedPrecondition);
      assert.equal(err.rawMessage, input.input.case === "stdin" ? "process has already exited" : "the process has no PTY: send stdin instead");
    }
    assert.deepEqual(after.writes, []);
  });

  test("Connect to an unknown process is not_found, before any event", async () => {
    const { client, subscribed } = streamFixture();
    const events: unknown[] = [];
    const err = await errorOf(collect(client.connect({ process: { selector: { case: "pid", value: 7 } } })).then((e) => events.push(...e)));
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, "process with pid 7 not found");
    assert.deepEqual(events, []);
    assert.deepEqual(subscribed, []);
  });

  test("SendInput writes stdin; stdin after CloseStdin and pty input to a pipe process are failed_precondition", async () => {
    const { client, writes } = streamFixture();
    const web = { selector: { case: "tag" as const, value: "web" } };
    await client.sendInput({ process: web, input: { input: { case: "stdin", value: Buffer.from("a") } } });
    assert.deepEqual(writes, ["stdin a"]);

    const pty = await errorOf(client.sendInput({ process: web, input: { input: { case: "pty", value: Buffer.from("b") } } }));
    assert.equal(pty.code, Code.FailedPrecondition);
    assert.equal(pty.rawMessage, "the process has no PTY: send stdin instead");

    await client.closeStdin({ process: web });
    const closed = await errorOf(client.sendInput({ process: web, input: { input: { case: "stdin", value: Buffer.from("c") } } }));
    assert.equal(closed.code, Code.FailedPrecondition);
    assert.equal(closed.rawMessage, "stdin is not enabled or already closed for this process");

    assert.equal(await codeOf(client.sendInput({ process: web })), Code.InvalidArgument);
    assert.deepEqual(writes, ["stdin a"]);
  });

  test("SendInput to an unknown process is not_found", async () => {
    const { client, writes } = streamFixture();
    const err = await errorOf(
      client.sendInput({ process: { selector: { case: "pid", value: 7 } }, input: { input: { case: "stdin", value: Buffer.from("a") } } }),
    );
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, "process with pid 7 not found");
    assert.deepEqual(writes, []);
  });

  test("StreamInput writes each data event in order after its start; keepalives are ignored", async () => {
    const { client, writes } = streamFixture();
    await client.streamInput(
      requests([
        { event: { case: "start", value: { process: { selector: { case: "pid", value: 42 } } } } },
        { event: { case: "data", value: { input: { input: { case: "stdin", value: Buffer.from("one") } } } } },
        { event: { case: "keepalive", value: {} } },
        { event: { case: "data", value: { input: { input: { case: "stdin", value: Buffer.from("two") } } } } },
      ]),
    );
    assert.deepEqual(writes, ["stdin one", "stdin two"]);
  });

  test("StreamInput: data before start is invalid_argument, an unknown process not_found, input in the wrong state failed_precondition", async () => {
    const { client, writes } = streamFixture();
    const data = { event: { case: "data" as const, value: { input: { input: { case: "stdin" as const, value: Buffer.from("x") } } } } };
    const early = await errorOf(client.streamInput(requests([data])));
    assert.equal(early.code, Code.InvalidArgument);
    assert.equal(early.rawMessage, "stream input must begin with a start message");

    const ghost = await errorOf(
      client.streamInput(requests([{ event: { case: "start", value: { process: { selector: { case: "tag", value: "nope" } } } } }, data])),
    );
    assert.equal(ghost.code, Code.NotFound);
    assert.equal(ghost.rawMessage, "process with tag nope not found");

    const pty = await errorOf(
      client.streamInput(
        requests([
          { event: { case: "start", value: { process: { selector: { case: "pid", value: 42 } } } } },
          { event: { case: "data", value: { input: { input: { case: "pty", value: Buffer.from("x") } } } } },
        ]),
      ),
    );
    assert.equal(pty.code, Code.FailedPrecondition);
    assert.equal(pty.rawMessage, "the process has no PTY: send stdin instead");
    assert.deepEqual(writes, []);
  });
});

/** Larger than the fanout merges, so each push is an entry of its own. */
const MERGE_PAST_BYTES = 32 << 10;

async function* requests(msgs: MessageInitShape<typeof StreamInputRequestSchema>[]) {
  yield* msgs;
}
