/**
 * Process service: validate the request, call the domain, build messages. No process logic here.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { abortError, Code, EnvdError } from "../errors.ts";
import {
  type Process,
  type ProcessEventSchema,
  type ProcessSelector,
  Signal,
} from "../gen/process/process_pb.js";
import type { ExitStatus } from "../process/exit-status.ts";
import type { ProcessHandle } from "../process/process-handle.ts";
import type { ProcessManager } from "../process/process-manager.ts";
import type { Selector } from "../process/process-table.ts";
import { resolveUser } from "../users/resolve-user.ts";
import type { UserDb } from "../users/user-db.ts";
import type { Session } from "../session.ts";
import { usernameFromAuthorization } from "./request-user.ts";
import { startRequestOf } from "./start-request.ts";
import { keepaliveMsOf, waitReady } from "./stream-pump.ts";

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
      yield* streamEvents(handle, false, ctx);
    },

    async *connect(req, ctx) {
      const handle = table.find(selectorOf(req.process));
      yield* streamEvents(handle, true, ctx);
    },

    update(req) {
      const handle = table.findLive(selectorOf(req.process));
      if (!req.pty) return {};
      handle.resize(req.pty.size?.cols ?? 0, req.pty.size?.rows ?? 0);
      return {};
    },

    async sendInput(req, ctx) {
      const handle = table.findLive(selectorOf(req.process));
      await writeInput(handle, req.input, ctx.signal);
      return {};
    },

    async streamInput(requests, ctx) {
      let handle: ProcessHandle | undefined;
      for await (const msg of requests) {
        switch (msg.event.case) {
          case "start":
            if (handle) throw new EnvdError(Code.InvalidArgument, "stream input already started");
            handle = table.findLive(selectorOf(msg.event.value.process));
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
      switch (req.signal) {
        case Signal.SIGKILL:
          handle.signal("SIGKILL");
          break;
        case Signal.SIGTERM:
          handle.signal("SIGTERM");
          break;
        default:
          throw new EnvdError(Code.Unimplemented, `invalid signal: ${req.signal}`);
      }
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
  handle: ProcessHandle,
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

/** start → data… (and keepalives) → end, from one subscription; leaves the process alone on exit. */
async function* streamEvents(
  handle: ProcessHandle,
  replay: boolean,
  ctx: HandlerContext,
): AsyncGenerator<{ event: EventInit }> {
  using sub = handle.subscribe(replay);
  const keepaliveMs = keepaliveMsOf(ctx.requestHeader);
  yield { event: { event: { case: "start", value: { pid: handle.pid } } } };
  for (;;) {
    const item = sub.take();
    if (item?.kind === "data") {
      yield { event: { event: { case: "data", value: { output: { case: item.chunk.stream, value: item.chunk.data } } } } };
      continue;
    }
    if (item?.kind === "end") {
      yield { event: { event: { case: "end", value: endOf(item.end) } } };
      return;
    }
    if ((await waitReady(sub.ready(), keepaliveMs, ctx.signal)) === "timeout") {
      yield { event: { event: { case: "keepalive", value: {} } } };
    }
  }
}

function endOf(s: ExitStatus) {
  return {
    exitCode: s.exitCode,
    exited: s.exited,
    status: s.status,
    ...(s.error !== undefined ? { error: s.error } : {}),
  };
}
