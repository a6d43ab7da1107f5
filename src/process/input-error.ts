/**
 * The one place that says what an input or terminal call on a process in the wrong state is:
 * FailedPrecondition, as E2B envd decides in one function (handler/input_error.go). The request
 * was well formed; the process is not in a state that can take it (stdin closed or never opened,
 * not a PTY, a PTY asked for stdin, already ended).
 */
import { Code, EnvdError } from "../errors.ts";

export type InputState = "stdin-closed" | "stdin-closed-while-writing" | "pty-has-no-stdin" | "no-pty" | "ended" | "pty-close-stdin";

const MESSAGES: Record<InputState, string> = {
  "stdin-closed": "stdin is not enabled or already closed for this process",
  "stdin-closed-while-writing": "stdin was closed while writing",
  "pty-has-no-stdin": "cannot write stdin to a PTY process: send pty input instead",
  "no-pty": "the process has no PTY: send stdin instead",
  ended: "process has already exited",
  "pty-close-stdin": "cannot close stdin for PTY process — send Ctrl+D (0x04) instead",
};

export function inputStateError(state: InputState): EnvdError {
  return new EnvdError(Code.FailedPrecondition, MESSAGES[state]);
}
