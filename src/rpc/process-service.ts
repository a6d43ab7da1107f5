/**
 * Process service: validate the request, call the domain, build messages. No process logic here.
 */
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { abortError, Code, EnvdError } from "../errors.ts";
import {
  ConnectResponseSchema,
  type Process,
  type ProcessEventSchema,
  StartResponseSchema,
  type ProcessSelector,
  Signal,
} from "../gen/process/process_pb.js";
import type { ExitStatus } from "../process/exit-status.ts";
import type { OutputOffsets } from "../process/output-history.ts";
import type { Subscription } from "../process/output-subscription.ts";
import type { ProcessManager } from "../process/process-manager.ts";
import type { ProcessRecord, Selector } from "../process/process-table.ts";
import { resolveUser } from "../users/resolve-user.ts";
import type { UserDb } from "../users/user-db.ts";
import type { Session } from "../session.ts";
import { usernameFromAuthorization } from "../users/request-user.ts";
import { startRequestOf } from "../process/start-request.ts";
import { encodeDataEventField } from "./data-event-wire.ts";
import { keepaliveMsOf, releaseOnAbort, waitReady } from "./stream-pump.ts";

type EventInit = MessageInitShape<typeof ProcessEventSchema>;

export interface ProcessServiceDeps {
  processes: ProcessManager;
  users: UserDb;
  session: Session;
}

export function createProcessService(deps: ProcessServiceDeps): ServiceImpl<typeof Process> {
  const { processes, users, session } = deps;
  const table = processes.table;

  return {
    list() {
      return {
        processes: table.list().map((h) => ({
          pid: h.pid,
          ...(h.tag !== undefined ? { tag: h.tag } : {}),
          config: {
            cmd: h.config.cmd,
            args: h.config.args,
            envs: h.config.envs,
            ...(h.config.cwd !== undefined ? { cwd: h.config.cwd } : {}),
          },
        })),
      };
    },

    async *start(req, ctx) {
      const user = resolveUser(users, usernameFromAuthorization(ctx.requestHeader.get("authorization")), session.defaultUser, "rpc");
      // A deadline that passed before we got here (a tiny Connect-Timeout-Ms, a late body) starts
      // nothing (startRequestOf refuses it): a process with no time left would run with no limit.
      if (ctx.signal.aborted) throw abortError(ctx.signal, "process not started");
      const handle = await processes.start(startRequestOf(req, user, ctx.timeoutMs())).catch((err: unknown) => {
        throw ctx.signal.aborted ? abortError(ctx.signal, "process not started") : err;
      });
      yield* streamEvents(handle.subscribe(false), handle.pid, ctx, StartResponseSchema);
    },

    async *connect(req, ctx) {
      const handle = table.find(selectorOf(req.process));
      const from = req.resumeFrom ? offsetsOf(req.resumeFrom) : undefined;
      yield* streamEvents(handle.subscribe(true, from), handle.pid, ctx, ConnectResponseSchema);
    },

    update(req) {
      const handle = table.findLive(selectorOf(req.process));
      if (!req.pty) return {};
      handle.resize(req.pty.size?.cols ?? 0, req.pty.size?.rows ?? 0);
      return {};
    },

    async sendInput(req, ctx) {
      // An ended process still retained answers failed_precondition ("already exited"), not not_found.
      const handle = table.find(selectorOf(req.process));
      await writeInput(handle, req.input, ctx.signal);
      return {};
    },

    async streamInput(requests, ctx) {
      let handle: ProcessRecord | undefined;
      for await (const msg of requests) {
        switch (msg.event.case) {
          case "start":
            if (handle) throw new EnvdError(Code.InvalidArgument, "stream input already started");
            handle = table.find(selectorOf(msg.event.value.process));
            break;
          case "data":
            if (!handle) throw new EnvdError(Code.InvalidArgument, "stream input must begin with a start message");
            await writeInput(handle, msg.event.value.input, ctx.signal);
            break;
          case "keepalive":
            break;
          default:
            throw new EnvdError(Code.InvalidArgument, "stream input message has no event");
        }
      }
      return {};
    },

    sendSignal(req) {
      const handle = table.findLive(selectorOf(req.process));
      const name = SIGNAL_NAMES.get(req.signal);
      // UNSPECIFIED stays Unimplemented, as Go envd answers it; numbers outside the enum are invalid.
      if (req.signal === Signal.UNSPECIFIED) throw new EnvdError(Code.Unimplemented, `invalid signal: ${req.signal}`);
      if (!name) {
        throw new EnvdError(Code.InvalidArgument, `invalid signal: ${req.signal} (supported: ${[...SIGNAL_NAMES.values()].join(", ")})`);
      }
      handle.signal(name);
      return {};
    },

    closeStdin(req) {
      table.findLive(selectorOf(req.process)).closeStdin();
      return {};
    },
  };
}

function selectorOf(sel: ProcessSelector | undefined): Selector {
  switch (sel?.selector.case) {
    case "pid":
      return { pid: sel.selector.value };
    case "tag":
      return { tag: sel.selector.value };
    default:
      throw new EnvdError(Code.InvalidArgument, "process selector (pid or tag) is required");
  }
}

async function writeInput(
  handle: ProcessRecord,
  input: { input: { case: "stdin" | "pty"; value: Uint8Array } | { case: undefined; value?: undefined } } | undefined,
  signal: AbortSignal,
): Promise<void> {
  switch (input?.input.case) {
    case "stdin":
      await handle.writeStdin(input.input.value, signal);
      return;
    case "pty":
      handle.writePty(input.input.value);
      return;
    default:
      throw new EnvdError(Code.InvalidArgument, "input (stdin or pty) is required");
  }
}

/** The signals SendSignal accepts: the enum's value is the Linux number. */
const SIGNAL_NAMES = new Map<Signal, NodeJS.Signals>([
  [Signal.SIGHUP, "SIGHUP"],
  [Signal.SIGINT, "SIGINT"],
  [Signal.SIGQUIT, "SIGQUIT"],
  [Signal.SIGKILL, "SIGKILL"],
  [Signal.SIGUSR1, "SIGUSR1"],
  [Signal.SIGUSR2, "SIGUSR2"],
  [Signal.SIGALRM, "SIGALRM"],
  [Signal.SIGTERM, "SIGTERM"],
  [Signal.SIGCONT, "SIGCONT"],
  [Signal.SIGSTOP, "SIGSTOP"],
  [Signal.SIGWINCH, "SIGWINCH"],
]);

/** ConnectRequest.resumeFrom as numbers (byte positions stay far below 2^53). */
function offsetsOf(o: { stdout: bigint; stderr: bigint; pty: bigint }): OutputOffsets {
  const n = (v: bigint, name: string) => {
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new EnvdError(Code.OutOfRange, `resumeFrom.${name} ${v} is not a byte position`);
    return Number(v);
  };
  return { stdout: n(o.stdout, "stdout"), stderr: n(o.stderr, "stderr"), pty: n(o.pty, "pty") };
}

/**
 * Data events of the binary codecs are at most this big: what protobuf-es then allocates for the
 * message (the next power of two of its size) stays 1 MiB.
 */
const BINARY_EVENT_MAX_BYTES = (1 << 20) - 64;

/** A wake that brings this much output at once (a full 64 KiB pipe read) waits one event-loop turn. */
const BURST_READ_BYTES = 64 << 10;

/** gRPC, gRPC-Web and Connect with protobuf: not JSON. */
function isBinaryCodec(headers: Headers): boolean {
  const type = headers.get("content-type") ?? "";
  return !/json/i.test(type);
}

/** start → data… (and keepalives) → end, from one subscription; leaves the process alone on exit. */
async function* streamEvents<D extends typeof StartResponseSchema | typeof ConnectResponseSchema>(
  subscription: Subscription<ExitStatus>,
  pid: number,
  ctx: HandlerContext,
  schema: D,
): AsyncGenerator<{ event: EventInit } | MessageShape<D>> {
  using sub = subscription;
  // The client leaving lets go of its place in the output at once, also while this generator is
  // parked in a write that backpressure holds: a departed reader must not keep the child paused.
  using _released = releaseOnAbort(ctx.signal, () => sub[Symbol.dispose]());
  const keepaliveMs = keepaliveMsOf(ctx.requestHeader);
  const binary = isBinaryCodec(ctx.requestHeader);
  const at = sub.offsets;
  const offsets = { stdout: BigInt(at.stdout), stderr: BigInt(at.stderr), pty: BigInt(at.pty) };
  yield { event: { event: { case: "start", value: { pid, offsets } } } };
  for (;;) {
    const item = sub.takeParts(binary ? BINARY_EVENT_MAX_BYTES : undefined);
    if (item?.kind === "data") {
      const { stream, parts, size, offset } = item.chunk;
      if (binary) {
        yield preEncoded(schema, encodeDataEventField(stream, offset, parts, size));
        continue;
      }
      const data = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
      yield { event: { event: { case: "data", value: { output: { case: stream, value: data }, offset: BigInt(offset) } } } };
      continue;
    }
    if (item?.kind === "end") {
      yield { event: { event: { case: "end", value: endOf(item.end) } } };
      return;
    }
    const woke = await waitReady(sub.ready(), keepaliveMs, ctx.signal);
    if (woke === "timeout") {
      yield { event: { event: { case: "keepalive", value: {} } } };
    } else if (sub.queuedBytes >= BURST_READ_BYTES) {
      // A full pipe read means more is waiting in the pipe: let the runtime finish this turn's
      // reads (Node reads up to 32 × 64 KiB per poll, and runs us after each) and send them as
      // one event. Smaller output (interactive, PTYs) goes out at once.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** A response whose field 1 (the event) is already encoded: protobuf-es writes it as is. */
function preEncoded<D extends DescMessage>(schema: D, eventField: Uint8Array): MessageShape<D> {
  const msg = create(schema);
  msg.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: eventField }];
  return msg;
}

function endOf(s: ExitStatus) {
  return {
    exitCode: s.exitCode,
    exited: s.exited,
    status: s.status,
    ...(s.error !== undefined ? { error: s.error } : {}),
  };
}
