/**
 * The hot message of the output streams in the binary codecs, encoded by hand: a StartResponse or
 * ConnectResponse (the same wire: field 1 is the ProcessEvent) holding one DataEvent. protobuf-es
 * would copy the output several times per message (its writer grows by doubling, and each of the
 * three nested length prefixes over 127 bytes moves the whole payload with copyWithin); here the
 * output is copied once, from the log's views into a buffer of the exact size (plus alignment).
 *
 * The result goes to connect-es as the response's one unknown field (number 1, length-delimited),
 * which protobuf-es writes as its tag and then these bytes unchanged: on the wire it is exactly
 * what `toBinary` of the decoded message gives (data-event-wire.test.ts checks byte for byte).
 * The JSON codec ignores unknown fields, so this is for the binary codecs only.
 */
import type { OutputStream } from "../process/output-history.ts";

/** DataEvent's field number of each stream (the `output` oneof). */
const STREAM_FIELD: Record<OutputStream, number> = { stdout: 1, stderr: 2, pty: 3 };
const LEN = 2; // wire type: length-delimited
const VARINT = 0;
const PROCESS_EVENT_DATA_FIELD = 2;
const DATA_EVENT_OFFSET_FIELD = 4;

function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes a non-negative safe integer as a varint at `pos`; returns the position after it. */
function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

/**
 * Field 1 of the response without its tag (the length prefix and the ProcessEvent): the
 * `data` of the unknown field `{ no: 1, wireType: LengthDelimited }`.
 */
export function encodeDataEventField(stream: OutputStream, offset: number, parts: readonly Uint8Array[], size: number): Uint8Array {
  // DataEvent: stream tag, length, bytes; offset tag (optional int64: written whenever set), varint.
  const dataEventLen = 1 + varintSize(size) + size + 1 + varintSize(offset);
  const processEventLen = 1 + varintSize(dataEventLen) + dataEventLen;
  const total = varintSize(processEventLen) + processEventLen;
  // The output starts 16-byte aligned in memory (as the log's buffers do): glibc's memmove on AMD
  // CPUs (rep movsb) copies ~15x slower between differently aligned addresses.
  const head = total - size - 1 - varintSize(offset);
  const pad = (16 - (head % 16)) % 16;
  const buf = Buffer.allocUnsafeSlow(pad + total).subarray(pad); // every byte is written below
  let pos = writeVarint(buf, 0, processEventLen);
  buf[pos++] = (PROCESS_EVENT_DATA_FIELD << 3) | LEN;
  pos = writeVarint(buf, pos, dataEventLen);
  buf[pos++] = (STREAM_FIELD[stream] << 3) | LEN;
  pos = writeVarint(buf, pos, size);
  for (const p of parts) {
    buf.set(p, pos);
    pos += p.byteLength;
  }
  buf[pos++] = (DATA_EVENT_OFFSET_FIELD << 3) | VARINT;
  pos = writeVarint(buf, pos, offset);
  if (pos !== total) throw new Error(`data event encoded to ${pos} bytes, expected ${total}`);
  return buf;
}
