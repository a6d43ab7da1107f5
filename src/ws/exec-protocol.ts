/**
 * The framing of GET /exec (docs/compatibility.md, "Beyond the anchors"): one WebSocket carries a
 * command's stdin one way and its output the other, simple enough for a browser or `websocat`.
 *
 * Client → daemon
 *  - the first message: a `process.StartRequest` in its protobuf JSON form (text or binary), e.g.
 *    `{"process":{"cmd":"wc","args":["-c"]}}` or, with a terminal,
 *    `{"process":{"cmd":"/bin/bash","args":["-l"]},"pty":{"size":{"cols":80,"rows":24}}}`;
 *  - binary messages: stdin bytes, as they are (to the terminal when there is one);
 *  - text messages: a control, JSON with a `type`:
 *      `{"type":"eof"}`                          stdin ends (the command sees EOF);
 *      `{"type":"resize","cols":N,"rows":N}`     the terminal's new size;
 *      `{"type":"signal","signal":"SIGINT"}`     a signal to the command's process group.
 *
 * Daemon → client
 *  - text `{"type":"start","pid":N}` once the command runs;
 *  - binary messages: one tag byte, then output bytes: 1 stdout, 2 stderr, 3 terminal;
 *  - text `{"type":"end","exitCode":N,"exited":B,"status":"…","error"?:"…"}` (the end event's
 *    fields, as Process/Start sends them), then the WebSocket closes with 1000;
 *  - text `{"type":"error","code":"invalid_argument","message":"…"}` when a message is refused
 *    (Connect's code names). A refused first message, or a command that cannot start, then closes
 *    with 1008 (1011 for an internal error); a refused later message leaves the session running.
 */
import { ConnectError } from "@connectrpc/connect";
import { Code, EnvdError } from "../errors.ts";
import type { ExitStatus } from "../process/exit-status.ts";
import type { OutputStream } from "../process/output-history.ts";

export const OUTPUT_TAG: Readonly<Record<OutputStream, number>> = { stdout: 1, stderr: 2, pty: 3 };

/** Signals a client may send, by name (the common POSIX ones). */
export const EXEC_SIGNALS: ReadonlySet<string> = new Set([
  "SIGINT",
  "SIGTERM",
  "SIGKILL",
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGWINCH",
  "SIGSTOP",
  "SIGCONT",
  "SIGALRM",
]);

export type ExecControl =
  | { type: "eof" }
  | { type: "resize"; cols: number; rows: number }
  | { type: "signal"; signal: NodeJS.Signals };

/** One output frame: the tag byte, then the bytes. */
export function outputFrame(stream: OutputStream, data: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(data.byteLength + 1);
  frame[0] = OUTPUT_TAG[stream];
  frame.set(data, 1);
  return frame;
}

/** A control message, or InvalidArgument saying what is wrong with it. */
export function parseControl(text: string): ExecControl {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new EnvdError(Code.InvalidArgument, "a text message must be a JSON control ({\"type\":\"eof\"|\"resize\"|\"signal\"})");
  }
  const msg = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
  switch (msg.type) {
    case "eof":
      return { type: "eof" };
    case "resize": {
      const { cols, rows } = msg;
      if (!isSize(cols) || !isSize(rows)) {
        throw new EnvdError(Code.InvalidArgument, `invalid PTY size ${String(cols)}x${String(rows)}: cols and rows must be 1..65535`);
      }
      return { type: "resize", cols, rows };
    }
    case "signal": {
      const name = typeof msg.signal === "string" ? msg.signal.toUpperCase() : "";
      const sig = name.startsWith("SIG") ? name : `SIG${name}`;
      if (!EXEC_SIGNALS.has(sig)) {
        throw new EnvdError(Code.InvalidArgument, `unsupported signal ${JSON.stringify(msg.signal)}: one of ${[...EXEC_SIGNALS].join(", ")}`);
      }
      return { type: "signal", signal: sig as NodeJS.Signals };
    }
    default:
      throw new EnvdError(Code.InvalidArgument, `unknown control type ${JSON.stringify(msg.type)}: "eof", "resize" or "signal"`);
  }
}

function isSize(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535;
}

export function startMessage(pid: number): string {
  return JSON.stringify({ type: "start", pid });
}

export function endMessage(s: ExitStatus): string {
  return JSON.stringify({
    type: "end",
    exitCode: s.exitCode,
    exited: s.exited,
    status: s.status,
    ...(s.error !== undefined ? { error: s.error } : {}),
  });
}

/** Connect's code names (`invalid_argument`), as Connect's JSON errors spell them. */
export function errorMessage(err: unknown): string {
  const known = err instanceof ConnectError ? err : undefined;
  return JSON.stringify({ type: "error", code: codeName(known?.code ?? Code.Internal), message: known?.rawMessage ?? "internal error" });
}

function codeName(code: Code): string {
  const name = Code[code] ?? "Unknown";
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}
