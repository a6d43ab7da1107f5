/**
 * Structured JSON logs, one object a line on stdout.
 *
 * Bounded: every string field is cut at MAX_FIELD_CHARS and a line at MAX_LINE_CHARS, so a huge
 * command line or error never floods the console or the host's log pipeline. Callers never pass
 * payloads (process output, file bytes) or tokens.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const MAX_FIELD_CHARS = 512;
const MAX_LINE_CHARS = 4096;

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(bindings: Fields): Logger;
}

export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (line) => process.stdout.write(line),
  bindings: Fields = {},
): Logger {
  const threshold = LEVELS[level];
  const emit = (lvl: LogLevel, msg: string, fields?: Fields) => {
    if (LEVELS[lvl] < threshold) return;
    const record: Fields = { ts: new Date().toISOString(), level: lvl, msg: bound(msg), ...bindings };
    if (fields) for (const [k, v] of Object.entries(fields)) record[k] = boundValue(v);
    let line = JSON.stringify(record);
    if (line.length > MAX_LINE_CHARS) line = JSON.stringify({ ...(shrink(record) as Fields), truncated: true });
    if (line.length > MAX_LINE_CHARS) {
      line = JSON.stringify({ ts: record.ts, level: lvl, msg: bound(msg), truncated: true, ...bindings });
    }
    write(`${line}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (more) => createLogger(level, write, { ...bindings, ...more }),
  };
}

/** The record with every string cut to 160 characters, for a line that came out too long. */
function shrink(v: unknown): unknown {
  if (typeof v === "string") return v.length > 160 ? `${v.slice(0, 160)}…` : v;
  if (Array.isArray(v)) return v.slice(0, 4).map(shrink);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shrink(x)]));
  return v;
}

function bound(s: string): string {
  return s.length > MAX_FIELD_CHARS ? `${s.slice(0, MAX_FIELD_CHARS)}…` : s;
}

function boundValue(v: unknown): unknown {
  if (typeof v === "string") return bound(v);
  if (v instanceof Error) return errorRecord(v, 0);
  if (Array.isArray(v)) return v.slice(0, 16).map(boundValue);
  return v;
}

/** How deep a cause chain is followed in a log line. */
const MAX_CAUSE_DEPTH = 4;

/**
 * An Error as a log field: its message, its code (errno name such as ENOENT, or the Connect code
 * name), errno, syscall and path when it has them, and its cause, recursively; never the message
 * alone, so the log says why, not only what.
 */
export function errorRecord(err: Error, depth: number): Record<string, unknown> {
  const e = err as Error & { code?: unknown; errno?: unknown; syscall?: unknown; path?: unknown; rawMessage?: unknown };
  const out: Record<string, unknown> = { message: bound(typeof e.rawMessage === "string" ? e.rawMessage : e.message) };
  if (e.name && e.name !== "Error") out.name = e.name;
  if (typeof e.code === "string") out.code = e.code;
  else if (typeof e.code === "number" && typeof e.rawMessage === "string") out.code = CONNECT_CODE_NAMES[e.code] ?? e.code;
  if (typeof e.errno === "number") out.errno = e.errno;
  if (typeof e.syscall === "string") out.syscall = e.syscall;
  if (typeof e.path === "string") out.path = bound(e.path);
  const cause = (err as { cause?: unknown }).cause;
  if (cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    out.cause = cause instanceof Error ? errorRecord(cause, depth + 1) : bound(String(cause));
  }
  return out;
}

/** Connect's codes by number (ConnectError.code), without importing the RPC library here. */
const CONNECT_CODE_NAMES: Record<number, string> = {
  1: "canceled",
  2: "unknown",
  3: "invalid_argument",
  4: "deadline_exceeded",
  5: "not_found",
  6: "already_exists",
  7: "permission_denied",
  8: "resource_exhausted",
  9: "failed_precondition",
  10: "aborted",
  11: "out_of_range",
  12: "unimplemented",
  13: "internal",
  14: "unavailable",
  15: "data_loss",
  16: "unauthenticated",
};
