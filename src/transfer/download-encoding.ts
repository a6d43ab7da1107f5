/**
 * Whether a GET /files answer is gzipped, once `Accept-Encoding` allows gzip (accept-encoding.ts).
 * Go envd gzips whenever gzip is acceptable; we choose as a well-run HTTP server does
 * (docs/compatibility.md, "Download compression"):
 *
 * - **required** (identity refused: `identity;q=0`, or `*;q=0` without identity): gzip.
 * - **explicit** (gzip is the only coding offered, e.g. `Accept-Encoding: gzip`, which the e2b SDK
 *   sends for `files.read(…, { gzip: true })`): gzip, unless the data does not get smaller.
 * - **offered** (gzip among others, e.g. `gzip, deflate`, which Node's and Bun's fetch add to every
 *   request unasked): gzip only a file of at most 8 MiB whose start compresses by at least 10 %.
 *   Large files go as they are (gzip level 1 runs at ~100–300 MB/s, slower than the link), and
 *   so does data that is already compressed.
 *
 * "Does not get smaller" is judged on the file's first 64 KiB (the whole file when smaller, so
 * small files are never sent larger than they are) deflated at the level we would send, plus the
 * 18 bytes of gzip framing; names ending in a compressed format (.gz, .zip, .png, .mp4…) are not
 * sampled at all.
 */
import { promisify } from "node:util";
import { constants as zlibConstants, deflateRaw } from "node:zlib";
import { parseAcceptEncoding } from "./accept-encoding.ts";

/** The zlib level downloads are gzipped at (the fastest: shrinks text several times at a fraction of level 6's CPU). */
export const GZIP_LEVEL = zlibConstants.Z_BEST_SPEED;
/** Bytes from the start of the file that decide whether it compresses. */
export const SAMPLE_BYTES = 64 << 10;
/** Largest file gzipped when the client merely offered gzip among other codings. */
export const OFFERED_MAX_BYTES = 8 << 20;
/** Header and trailer a gzip stream adds to the raw deflate data. */
const GZIP_FRAMING_BYTES = 18;
/** Offered: the sample must shrink to at most this share of its size. */
const OFFERED_MAX_RATIO = 0.9;

/** How strongly the client asked for gzip (see the module comment). */
export type GzipWish = "required" | "explicit" | "offered";

/**
 * For a header that negotiateEncoding answered with gzip: required when identity is refused,
 * explicit when gzip (or x-gzip) is the only coding with q > 0 besides identity, else offered.
 */
export function gzipWish(acceptEncoding: string): GzipWish {
  const entries = parseAcceptEncoding(acceptEncoding);
  const identity = entries.find((e) => e.coding === "identity");
  const star = entries.find((e) => e.coding === "*");
  if (identity ? identity.q === 0 : star?.q === 0) return "required";
  const others = entries.filter((e) => e.q > 0 && e.coding !== "identity" && e.coding !== "gzip" && e.coding !== "x-gzip");
  return others.length === 0 ? "explicit" : "offered";
}

/** File name endings of formats that are compressed already (checked case-insensitively). */
const COMPRESSED_EXTENSIONS = new Set(
  (
    "gz tgz zip jar war apk aab whl egg xz txz lzma bz2 tbz tbz2 zst zstd tzst lz4 lz br 7z rar cab deb rpm " +
    "png jpg jpeg gif webp avif heic heif jxl mp3 mp4 m4a m4v mov mkv webm ogg oga ogv opus flac aac wma wmv avi " +
    "woff woff2 squashfs sqsh"
  ).split(" "),
);

export function hasCompressedExtension(path: string): boolean {
  const slash = path.lastIndexOf("/");
  const dot = path.lastIndexOf(".");
  if (dot <= slash + 1) return false;
  return COMPRESSED_EXTENSIONS.has(path.slice(dot + 1).toLowerCase());
}

const deflate = promisify(deflateRaw);

/** Size of `sample` gzipped at GZIP_LEVEL (deflated off the event loop, on the threadpool). */
export async function gzippedSize(sample: Uint8Array): Promise<number> {
  const out = await deflate(sample, { level: GZIP_LEVEL });
  return out.length + GZIP_FRAMING_BYTES;
}

export interface DownloadFile {
  /** Path as the client named it (for the extension). */
  path: string;
  /** fstat size; 0 for procfs-like files whose length is only known by reading (treated as small). */
  size: number;
  /** Reads up to `bytes` from the start of the file. */
  readStart(bytes: number): Promise<Uint8Array>;
}

/** gzip or identity for a download whose `Accept-Encoding` negotiated gzip. */
export async function chooseGzip(acceptEncoding: string, file: DownloadFile): Promise<"gzip" | "identity"> {
  const wish = gzipWish(acceptEncoding);
  if (wish === "required") return "gzip";
  if (wish === "offered" && file.size > OFFERED_MAX_BYTES) return "identity";
  if (hasCompressedExtension(file.path)) return "identity";
  const sample = await file.readStart(SAMPLE_BYTES);
  // An empty file gzipped is 20 bytes: worse than nothing.
  if (sample.length === 0) return "identity";
  // When the whole file was sampled this is exact; otherwise the start stands for the rest.
  const gz = await gzippedSize(sample);
  const limit = wish === "explicit" ? sample.length : sample.length * OFFERED_MAX_RATIO;
  return gz < limit ? "gzip" : "identity";
}
