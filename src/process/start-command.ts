/**
 * `-cmd`: a command started at boot as an ordinary tracked process, tagged "startCmd", so List
 * shows it and Connect (by pid or tag) attaches to it and gets its output since boot (up to the
 * process history). It runs as E2B envd's old `-cmd` did, `/bin/bash -l -c <cmd>`, as the default
 * user (root at boot), in the default workdir or else the user's home, with stdin open so
 * SendInput reaches it. A command that cannot start is logged; the daemon keeps running.
 */
import type { Logger } from "../log.ts";
import type { ProcessHandle } from "./process-handle.ts";
import type { ProcessManager } from "./process-manager.ts";
import type { UserDb } from "../users/user-db.ts";
import type { Session } from "../session.ts";

export const START_COMMAND_TAG = "startCmd";

export async function startBootCommand(
  cmd: string,
  deps: { processes: ProcessManager; users: UserDb; session: Session; log: Logger },
): Promise<ProcessHandle | undefined> {
  const { processes, users, session, log } = deps;
  const user = users.lookup(session.defaultUser);
  if (!user) {
    log.error("start command not started: unknown default user", { user: session.defaultUser });
    return undefined;
  }
  try {
    const handle = await processes.start({
      cmd: "/bin/bash",
      args: ["-l", "-c", cmd],
      envs: {},
      cwd: undefined,
      user,
      tag: START_COMMAND_TAG,
      pty: undefined,
      stdin: true,
      timeoutMs: undefined,
    });
    log.info("start command started", { pid: handle.pid });
    return handle;
  } catch (err) {
    log.error("start command failed to start", { err: (err as Error).message });
    return undefined;
  }
}
