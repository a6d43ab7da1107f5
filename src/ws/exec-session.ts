/**
 * One GET /exec WebSocket (framing: exec-protocol.ts): reads the StartRequest, starts the command
 * through the ProcessManager exactly as Process/Start does, then pumps stdin in and output out.
 *
 * Backpressure both ways: output is taken from the process's subscription only while the send
 * window has room (a slow client pauses the command's pipes through the fan-out, as a slow
 * Connect stream does); messages from the client are handled one at a time, and the WebSocket
 * stops being read while more than a high-water mark of them waits (a command that does not
 * read its stdin holds the client back).
 *
 * As with Process/Start, the command outlives the connection: a client that goes away leaves it
 * running, in the process table, reachable by pid or tag through Process/Connect, SendInput and
 * SendSignal. The daemon shutting down ends the command (its end event is still sent).
 */
import { fromJsonString } from "@bufbuild/protobuf";
import { Code, EnvdError } from "../errors.ts";
import { type StartRequest, StartRequestSchema } from "../gen/process/process_pb.js";
import type { Logger } from "../log.ts";
import type { ProcessHandle } from "../process/process-handle.ts";
import type { ProcessManager } from "../process/process-manager.ts";
import { usernameFromAuthorization } from "../users/request-user.ts";
import { startRequestOf } from "../process/start-request.ts";
import type { Session } from "../session.ts";
import { resolveUser } from "../users/resolve-user.ts";
import type { User, UserDb } from "../users/user-db.ts";
import { endMessage, errorMessage, outputFrame, parseControl, startMessage } from "./exec-protocol.ts";
import { keepAlive, SendWindow, type WebSocket, WS_SEND_HIGH_WATER_BYTES, WS_SEND_LOW_WATER_BYTES } from "./websocket.ts";

export interface ExecSessionDeps {
  processes: ProcessManager;
  /** The user the command runs as (resolved from the upgrade request, before the handshake). */
  user: User;
  log: Logger;
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
}

type Incoming = { data: Buffer; isBinary: boolean };

/**
 * The user an exec runs as, by Process/Start's rules: `Authorization: Basic base64(user:)`, else
 * the default user; `?username=` stands in when there is no Authorization header (a browser cannot
 * set one on a WebSocket). Unknown → Unauthenticated, with Start's message.
 */
export function execUserOf(users: UserDb, session: Session, authorization: string | undefined, queryName: string | null): User {
  const requested = authorization !== undefined ? usernameFromAuthorization(authorization) : queryName || undefined;
  return resolveUser(users, requested, session.defaultUser, "rpc");
}

/** Runs the session; resolves when the WebSocket has closed. */
export function runExecSession(ws: WebSocket, deps: ExecSessionDeps): Promise<void> {
  const { log } = deps;
  keepAlive(ws, deps.pingIntervalMs, deps.pongTimeoutMs);
  const window = new SendWindow(ws);
  const queue: Incoming[] = [];
  let queuedBytes = 0;
  let busy = false;
  let handle: ProcessHandle | undefined;
  let closed = false;
  let refused = false;

  const gone = new AbortController();
  const done = new Promise<void>((resolve) => ws.once("close", () => resolve()));
  ws.once("close", () => {
    closed = true;
    queue.length = 0;
    gone.abort(new EnvdError(Code.Canceled, "the client went away"));
  });
  ws.on("error", (err) => log.debug("exec client error", { err: err.message }));

  const refuse = (err: unknown) => {
    refused = true;
    if (!(err instanceof EnvdError)) log.error("exec failed", { err });
    if (ws.readyState !== ws.OPEN) return;
    ws.send(errorMessage(err));
    ws.close(err instanceof EnvdError && err.code !== Code.Internal ? 1008 : 1011, "refused");
  };

  const start = async (msg: Incoming) => {
    let req: StartRequest;
    try {
      req = fromJsonString(StartRequestSchema, msg.data.toString("utf8"), { ignoreUnknownFields: true });
    } catch (err) {
      throw new EnvdError(Code.InvalidArgument, `the first message must be a process.StartRequest as JSON: ${(err as Error).message}`);
    }
    const started = await deps.processes.start(startRequestOf(req, deps.user, undefined));
    handle = started;
    if (closed) return; // the client left while the command started: it runs on, as after Start
    ws.send(startMessage(started.pid));
    void pumpOutput(started);
  };

  const pumpOutput = async (h: ProcessHandle) => {
    using sub = h.subscribe(false);
    try {
      while (!closed) {
        const item = sub.take();
        if (item?.kind === "data") {
          window.send(outputFrame(item.chunk.stream, item.chunk.data), true);
          if (window.full) await window.drained();
          continue;
        }
        if (item?.kind === "end") {
          window.send(endMessage(item.end), false);
          await window.drained();
          if (ws.readyState === ws.OPEN) ws.close(1000, "process ended");
          return;
        }
        await Promise.race([sub.ready(), done]);
      }
    } catch (err) {
      // The fan-out dropped this subscriber (too slow for too long): say so and close.
      if (ws.readyState === ws.OPEN) {
        ws.send(errorMessage(err));
        ws.close(1011, "output stream failed");
      }
    }
  };

  const handleMessage = async (msg: Incoming) => {
    if (!handle) return start(msg);
    const h = handle;
    if (msg.isBinary) {
      if (h.isPty) h.writePty(msg.data);
      else await h.writeStdin(msg.data, gone.signal);
      return;
    }
    const control = parseControl(msg.data.toString("utf8"));
    switch (control.type) {
      case "eof":
        if (h.isPty) throw new EnvdError(Code.InvalidArgument, "a terminal has no separate stdin to end: send Ctrl+D (0x04) instead");
        h.closeStdin();
        return;
      case "resize":
        h.resize(control.cols, control.rows);
        return;
      case "signal":
        h.signal(control.signal);
        return;
    }
  };

  const reportLater = (err: unknown) => {
    if (ws.readyState === ws.OPEN && handle && !handle.status) ws.send(errorMessage(err));
  };

  const drain = async () => {
    busy = true;
    while (queue.length > 0 && !closed && !refused) {
      const msg = queue.shift() as Incoming;
      queuedBytes -= msg.data.byteLength;
      if (queuedBytes <= WS_SEND_LOW_WATER_BYTES && ws.isPaused) ws.resume();
      try {
        await handleMessage(msg);
      } catch (err) {
        if (!handle) refuse(err);
        else reportLater(err);
      }
    }
    busy = false;
  };

  ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    // Signals and resizes do not wait behind stdin a command is not reading (Ctrl+C must get
    // through); `eof` stays in order after the data before it.
    if (!isBinary && handle && isOutOfBand(buf)) return void handleMessage({ data: buf, isBinary }).catch(reportLater);
    queue.push({ data: buf, isBinary });
    queuedBytes += buf.byteLength;
    if (queuedBytes > WS_SEND_HIGH_WATER_BYTES && !ws.isPaused) ws.pause();
    if (!busy) void drain();
  });

  return done;
}

/** A control that is not `eof` (peeked without a full parse; a malformed one waits its turn). */
function isOutOfBand(text: Buffer): boolean {
  return /"type"\s*:\s*"(signal|resize)"/.test(text.toString("utf8"));
}
