/**
 * The daemon's one error type and the mappings around it.
 *
 * `EnvdError` is a ConnectError, so RPC handlers throw it unchanged; HTTP handlers turn it into
 * `{"code": <status>, "message": "…"}` through `httpStatusOf`. The message is what the client sees;
 * the cause is only logged.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export { Code };

export class EnvdError extends ConnectError {
  /** HTTP status for REST routes when the Connect mapping is not the one E2B uses (406, 416, 507). */
  readonly httpStatus: number | undefined;

  constructor(code: Code, message: string, options: { cause?: unknown; httpStatus?: number } = {}) {
    super(message, code, undefined, undefined, options.cause);
    this.httpStatus = options.httpStatus;
  }
}

/** errno → Connect code, for an operation on a path. */
export function fromNodeError(err: unknown, what: string): EnvdError {
  if (err instanceof EnvdError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const detail = (err as Error | undefined)?.message ?? String(err);
  switch (code) {
    case "ENOENT":
      return new EnvdError(Code.NotFound, `${what}: no such file or directory`, { cause: err });
    case "EEXIST":
      return new EnvdError(Code.AlreadyExists, `${what}: already exists`, { cause: err });
    case "EACCES":
    case "EPERM":
      return new EnvdError(Code.PermissionDenied, `${what}: permission denied`, { cause: err });
    case "ENOTDIR":
      return new EnvdError(Code.InvalidArgument, `${what}: not a directory`, { cause: err });
    case "EISDIR":
      return new EnvdError(Code.InvalidArgument, `${what}: is a directory`, { cause: err });
    case "ENAMETOOLONG":
      return new EnvdError(Code.InvalidArgument, `${what}: file name too long`, { cause: err });
    case "ELOOP":
      return new EnvdError(Code.FailedPrecondition, `${what}: too many levels of symbolic links`, { cause: err });
    case "EMFILE":
    case "ENFILE":
      return new EnvdError(Code.ResourceExhausted, `${what}: too many open files`, { cause: err });
    case "EAGAIN":
      return new EnvdError(Code.ResourceExhausted, `${what}: resource temporarily unavailable`, { cause: err });
    case "ENOMEM":
      return new EnvdError(Code.ResourceExhausted, `${what}: out of memory`, { cause: err });
    case "ENOSPC":
      return new EnvdError(Code.ResourceExhausted, `${what}: not enough disk space available`, {
        cause: err,
        httpStatus: 507,
      });
    case "EDQUOT":
      return new EnvdError(Code.ResourceExhausted, `${what}: disk quota exceeded`, { cause: err, httpStatus: 507 });
    case "EXDEV":
      return new EnvdError(Code.FailedPrecondition, `${what}: cross-device operation not supported`, { cause: err });
    case "ENOTEMPTY":
      return new EnvdError(Code.FailedPrecondition, `${what}: directory not empty`, { cause: err });
    case "EROFS":
      return new EnvdError(Code.FailedPrecondition, `${what}: read-only file system`, { cause: err });
    default:
      return new EnvdError(Code.Internal, `${what}: ${detail}`, { cause: err });
  }
}

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
  [Code.Unauthenticated]: 401,
};

/** The HTTP status a REST route answers for an error. */
export function httpStatusOf(err: unknown): number {
  if (err instanceof EnvdError && err.httpStatus !== undefined) return err.httpStatus;
  if (err instanceof ConnectError) return HTTP_STATUS[err.code] ?? 500;
  return 500;
}

/** errno values that mean the machine ran out of something (processes, memory, descriptors, disk). */
const RESOURCE_ERRNOS = new Set(["EAGAIN", "ENOMEM", "EMFILE", "ENFILE", "ENOSPC"]);

/**
 * Why a process could not be started: out of resources → ResourceExhausted (retry later); the
 * request's deadline or cancellation → DeadlineExceeded / Canceled; anything else (no such
 * program, not executable, bad cwd) → InvalidArgument, as E2B envd answers.
 */
export function spawnError(err: unknown, signal?: AbortSignal): EnvdError {
  if (err instanceof EnvdError) return err;
  const detail = (err as Error | undefined)?.message ?? String(err);
  if (signal?.aborted) return abortError(signal, `process not started: ${detail}`);
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  if (errno !== undefined && RESOURCE_ERRNOS.has(errno)) {
    return new EnvdError(Code.ResourceExhausted, `failed to start process: ${detail}`, { cause: err });
  }
  return new EnvdError(Code.InvalidArgument, `failed to start process: ${detail}`, { cause: err });
}

/** The error for work stopped by an aborted request signal: its own ConnectError, a deadline, or a cancellation. */
export function abortError(signal: AbortSignal, what: string): EnvdError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) {
    return new EnvdError(reason.code === Code.DeadlineExceeded ? Code.DeadlineExceeded : reason.code, `${what}: ${reason.rawMessage}`, { cause: reason });
  }
  if ((reason as Error | undefined)?.name === "TimeoutError") {
    return new EnvdError(Code.DeadlineExceeded, `${what}: the request deadline passed`, { cause: reason });
  }
  return new EnvdError(Code.Canceled, `${what}: the request was canceled`, { cause: reason });
}
