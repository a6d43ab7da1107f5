/**
 * Response encoding for GET /files from `Accept-Encoding` (docs/protocol.md §4.3). gzip is the only
 * coding we produce besides identity.
 *
 * Entries are tried by q-value, highest first (stable for equal q); q=0 entries are skipped.
 * `identity` → identity, `gzip` → gzip, `*` → gzip only when identity was refused, else
 * identity. Identity is refused by `identity;q=0`, or by `*;q=0` without an `identity` entry of
 * q > 0. Nothing acceptable and identity refused → null (the caller answers 406).
 */
export type ResponseEncoding = "identity" | "gzip";

interface Entry {
  coding: string;
  q: number;
}

export function parseAcceptEncoding(header: string): Entry[] {
  const out: Entry[] = [];
  for (const item of header.split(",")) {
    const [name = "", ...params] = item.split(";");
    const coding = name.trim().toLowerCase();
    if (coding === "") continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) {
        const v = Number(m[1]);
        if (Number.isFinite(v)) q = Math.min(Math.max(v, 0), 1);
      }
    }
    out.push({ coding, q });
  }
  return out;
}

export function negotiateEncoding(header: string | undefined): ResponseEncoding | null {
  if (header === undefined || header.trim() === "") return "identity";
  const entries = parseAcceptEncoding(header);
  const identityRefused = refusesIdentity(entries);
  const ordered = entries.map((e, i) => ({ ...e, i })).sort((a, b) => b.q - a.q || a.i - b.i);
  for (const e of ordered) {
    if (e.q === 0) continue;
    if (e.coding === "identity") return "identity";
    if (e.coding === "gzip" || e.coding === "x-gzip") return "gzip";
    if (e.coding === "*") return identityRefused ? "gzip" : "identity";
  }
  return identityRefused ? null : "identity";
}

/** True when the header forbids an unencoded response (so Range and If-* cannot be served). */
export function isIdentityRefused(header: string | undefined): boolean {
  if (header === undefined || header.trim() === "") return false;
  return refusesIdentity(parseAcceptEncoding(header));
}

function refusesIdentity(entries: Entry[]): boolean {
  const identity = entries.find((e) => e.coding === "identity");
  if (identity) return identity.q === 0;
  return entries.find((e) => e.coding === "*")?.q === 0;
}
