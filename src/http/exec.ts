/**
 * GET /exec: a command over one WebSocket (ours, beyond the anchors; framing in
 * src/ws/exec-protocol.ts). Same token gate as every gated route and the same user rules as
 * Process/Start: `Authorization: Basic base64(user:)`, else the default user from /init; since a
 * browser cannot set headers on a WebSocket, `?username=` is taken when there is no
 * Authorization header (as GET /files takes it). An unknown user is refused before the upgrade
 * (401 JSON). A request that is not an upgrade is answered 426.
 */
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { ProcessManager } from "../process/process-manager.ts";
import type { Session } from "../session.ts";
import type { UserDb } from "../users/user-db.ts";
import { execUserOf, runExecSession } from "../ws/exec-session.ts";
import { header } from "./headers.ts";
import type { RouteHandler } from "./router.ts";
import type { UpgradeHandler } from "./upgrade-router.ts";

export interface ExecDeps {
  processes: ProcessManager;
  users: UserDb;
  session: Session;
  log: Logger;
}

export function getExecUpgrade(deps: ExecDeps): UpgradeHandler {
  return async ({ req, url, accept }) => {
    const user = execUserOf(deps.users, deps.session, header(req, "authorization"), url.searchParams.get("username"));
    const ws = await accept();
    await runExecSession(ws, { processes: deps.processes, user, log: deps.log });
  };
}

export function getExec(): RouteHandler {
  return ({ res }) => {
    res.setHeader("Upgrade", "websocket");
    throw new EnvdError(Code.FailedPrecondition, "GET /exec must be a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)", {
      httpStatus: 426,
    });
  };
}
