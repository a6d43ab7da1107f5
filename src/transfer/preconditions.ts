/**
 * Conditional and range requests for GET /files (RFC 9110 §13.2.2 and §14), evaluated the way
 * Go's http.ServeContent does, with one addition: we send a strong ETag, so If-None-Match,
 * If-Match and an ETag If-Range can succeed.
 *
 * Order: If-Match (else If-Unmodified-Since) → 412; If-None-Match (else If-Modified-Since) →
 * 304; then If-Range decides whether `Range` applies; then the range itself → 206 or 416.
 * Dates compare at one-second resolution (HTTP dates have no more). Unparseable dates are ignored.
 */
import rangeParser from "range-parser";

export interface Validators {
  /** Strong entity tag, quoted: `"…"`. */
  etag: string;
  mtimeMs: number;
}

export interface ConditionalHeaders {
  ifMatch?: string | undefined;
  ifNoneMatch?: string | undefined;
  ifModifiedSince?: string | undefined;
  ifUnmodifiedSince?: string | undefined;
}

/** 412, 304, or undefined when the request proceeds. */
export function evaluatePreconditions(h: ConditionalHeaders, v: Validators): 304 | 412 | undefined {
  if (h.ifMatch !== undefined) {
    if (!etagListMatches(h.ifMatch, v.etag, true)) return 412;
  } else if (h.ifUnmodifiedSince !== undefined) {
    const t = parseHttpDate(h.ifUnmodifiedSince);
    if (t !== undefined && seconds(v.mtimeMs) > t) return 412;
  }
  if (h.ifNoneMatch !== undefined) {
    if (etagListMatches(h.ifNoneMatch, v.etag, false)) return 304;
  } else if (h.ifModifiedSince !== undefined) {
    const t = parseHttpDate(h.ifModifiedSince);
    if (t !== undefined && seconds(v.mtimeMs) <= t) return 304;
  }
  return undefined;
}

/** Whether `Range` may be honoured given `If-Range` (absent → yes). */
export function ifRangeAllows(ifRange: string | undefined, v: Validators): boolean {
  if (ifRange === undefined) return true;
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith("W/")) return !value.startsWith("W/") && value === v.etag;
  const t = parseHttpDate(value);
  return t !== undefined && t === seconds(v.mtimeMs);
}

export type RangeDecision =
  | { kind: "full" }
  | { kind: "partial"; start: number; end: number }
  | { kind: "unsatisfiable" };

/**
 * One `Range` header against a file of `size` bytes. Overlapping or adjacent ranges are merged;
 * a request that still names several ranges is answered in full (legal, and what many servers
 * do instead of multipart/byteranges). Units other than `bytes` are ignored (RFC 9110 §14.2).
 * A malformed bytes range is unsatisfiable (416), as Go answers.
 */
export function decideRange(header: string | undefined, size: number): RangeDecision {
  if (header === undefined || header.trim() === "") return { kind: "full" };
  const eq = header.indexOf("=");
  if (eq !== -1 && header.slice(0, eq).trim().toLowerCase() !== "bytes") return { kind: "full" };
  const ranges = rangeParser(size, header.trim(), { combine: true });
  if (ranges === -1 || ranges === -2) return { kind: "unsatisfiable" };
  if (ranges.length !== 1) return { kind: "full" };
  const r = ranges[0] as rangeParser.Range;
  return { kind: "partial", start: r.start, end: r.end };
}

/** A strong ETag from what changes when the file does: inode, size and mtime in nanoseconds. */
export function makeEtag(ino: bigint, size: bigint, mtimeNs: bigint): string {
  return `"${ino.toString(16)}-${size.toString(16)}-${mtimeNs.toString(16)}"`;
}

function etagListMatches(list: string, etag: string, strong: boolean): boolean {
  const trimmed = list.trim();
  if (trimmed === "*") return true;
  const bare = (t: string) => (t.startsWith("W/") ? t.slice(2) : t);
  for (const raw of splitEtags(trimmed)) {
    if (strong) {
      if (!raw.startsWith("W/") && raw === etag) return true;
    } else if (bare(raw) === bare(etag)) return true;
  }
  return false;
}

/** Splits an entity-tag list on commas outside quotes. */
function splitEtags(list: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (const ch of list) {
    if (ch === '"') quoted = !quoted;
    if (ch === "," && !quoted) {
      if (cur.trim()) out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

/** HTTP-date (IMF-fixdate, RFC 850 or asctime) → Unix seconds; undefined when unparseable. */
export function parseHttpDate(value: string): number | undefined {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}
