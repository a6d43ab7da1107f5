/**
 * `Content-Disposition: inline` for a downloaded file, safe for any file name (Linux names may
 * hold quotes, backslashes, control characters and any Unicode).
 *
 * Printable-ASCII names give `inline; filename="name"` (quotes and backslashes escaped). Any
 * other name adds the RFC 6266 / RFC 5987 form `filename*=UTF-8''<percent-encoded UTF-8>`, with
 * an ASCII fallback (`_` for each character outside printable ASCII) in `filename`. The result
 * never contains a byte outside 0x20–0x7E, so it is always a legal header value.
 */
const ATTR_CHAR = /[A-Za-z0-9!#$&+\-.^_`|~]/;

export function contentDisposition(name: string): string {
  let fallback = "";
  let plain = true;
  for (const ch of name) {
    const c = ch.codePointAt(0) as number;
    if (c < 0x20 || c > 0x7e) {
      fallback += "_";
      plain = false;
    } else if (ch === '"' || ch === "\\") fallback += `\\${ch}`;
    else fallback += ch;
  }
  const head = `inline; filename="${fallback}"`;
  if (plain) return head;
  return `${head}; filename*=UTF-8''${encodeRfc5987(name)}`;
}

/** RFC 5987 `value-chars`: attr-char as is, every other UTF-8 byte as %XX. */
export function encodeRfc5987(value: string): string {
  let out = "";
  for (const byte of Buffer.from(value, "utf8")) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && ATTR_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
