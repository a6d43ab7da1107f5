/**
 * A `process.StartRequest` turned into the process domain's start request: the one place the
 * message is validated, shared by Process/Start and GET /exec (src/ws/exec-session.ts).
 */
import { Code, EnvdError } from "../errors.ts";
import type { StartRequest as StartMessage } from "../gen/process/process_pb.js";
import type { StartRequest } from "../process/process-manager.ts";
import type { User } from "../users/user-db.ts";

export function startRequestOf(req: StartMessage, user: User, timeoutMs: number | undefined): StartRequest {
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
