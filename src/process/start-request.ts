/**
 * A start request as the wire carries it (the fields of `process.StartRequest`) turned into the
 * process domain's StartRequest: the one place it is validated, shared by Process/Start
 * (rpc/process-service.ts) and GET /exec (ws/exec-session.ts).
 *
 * The input is described structurally, so this room needs nothing from src/gen: a generated
 * `StartRequest` message has these fields and is passed as it is.
 */
import { Code, EnvdError } from "../errors.ts";
import type { User } from "../users/user-db.ts";
import type { StartRequest } from "./process-manager.ts";

/** The fields of `process.StartRequest` this reads. */
export interface StartRequestFields {
  process?: { cmd: string; args: string[]; envs: Record<string, string>; cwd?: string | undefined } | undefined;
  pty?: { size?: { cols: number; rows: number } | undefined } | undefined;
  tag?: string | undefined;
  stdin?: boolean | undefined;
}

export function startRequestOf(req: StartRequestFields, user: User, timeoutMs: number | undefined): StartRequest {
  const p = req.process;
  if (!p) throw new EnvdError(Code.InvalidArgument, "process is required");
  if (timeoutMs !== undefined && timeoutMs <= 0) {
    throw new EnvdError(Code.DeadlineExceeded, "process not started: the request deadline had already passed");
  }
  let pty: { cols: number; rows: number } | undefined;
  if (req.pty) {
    const cols = req.pty.size?.cols ?? 0;
    const rows = req.pty.size?.rows ?? 0;
    if (cols < 1 || rows < 1 || cols > 65535 || rows > 65535) {
      throw new EnvdError(Code.InvalidArgument, `invalid PTY size ${cols}x${rows}: cols and rows must be 1..65535`);
    }
    pty = { cols, rows };
  }
  return {
    cmd: p.cmd,
    args: p.args,
    envs: p.envs,
    cwd: p.cwd,
    user,
    tag: req.tag,
    pty,
    stdin: req.stdin ?? true,
    timeoutMs,
  };
}
