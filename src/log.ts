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

function bound(s: string): string {
  return s.length > MAX_FIELD_CHARS ? `${s.slice(0, MAX_FIELD_CHARS)}…` : s;
}

function boundValue(v: unknown): unknown {
  if (typeof v === "string") return bound(v);
  if (v instanceof Error) return bound(v.message);
  if (Array.isArray(v)) return v.slice(0, 16).map(boundValue);
  return v;
}
