/**
 * The shared log of one process's output, and its eviction: what OutputFanout's subscribers read.
 *
 * - Every read of the child's output is appended once, whatever the number of readers. Each stream
 *   (stdout, stderr, pty) has its own byte position counted from the process start; an entry knows
 *   the position of its first byte, so every data item a reader takes carries its exact `offset`.
 * - Entries are numbered (sequence numbers never reused); readers hold a sequence number and a
 *   byte position inside the entry, so evicting old entries never moves a reader.
 * - Memory is counted, not bytes: each entry costs its buffer's capacity plus the per-entry
 *   overhead, and small reads of the same stream are merged into one growing entry, so a
 *   byte-at-a-time writer costs about one byte per byte of history, not one object per byte.
 * - What to keep is the fanout's decision (`evict(limit, pinnedSeq, keepLast)`); this module only
 *   drops the oldest entries within those bounds and remembers, per stream, where the kept bytes start.
 */

export type OutputStream = "stdout" | "stderr" | "pty";
export const OUTPUT_STREAMS: readonly OutputStream[] = ["stdout", "stderr", "pty"];

/** A byte position in each stream, counted from the process start. */
export type OutputOffsets = Record<OutputStream, number>;

export interface OutputChunk {
  stream: OutputStream;
  /** Position of `data[0]` in its stream. */
  offset: number;
  data: Buffer;
}

/**
 * Estimated memory of one log entry besides its bytes: the entry object (~64 B), a Buffer view
 * (~96 B) and an ArrayBuffer backing store header (~96 B). Counted in every bound of the fanout.
 */
export const ENTRY_OVERHEAD_BYTES = 256;
/** Reads smaller than this are copied into (and merged with) a growing entry of their stream. */
const MERGE_BELOW_BYTES = 16 << 10;
/** A merged entry grows (doubling) up to this capacity, then a new one starts. */
const MERGED_ENTRY_MAX_BYTES = 64 << 10;

export interface OutputEntry {
  readonly stream: OutputStream;
  /** Position of buf[0] in its stream. */
  readonly offset: number;
  /** Position of buf[0] among all bytes pushed (every stream). */
  readonly start: number;
  buf: Buffer;
  len: number;
  /** A buffer we own with room to grow: later small reads of the same stream are appended. */
  mergeable: boolean;
}

/**
 * The retained output of an ended process, packed for its record (ended-process.ts): every byte in
 * one buffer, and the entries' boundaries in one typed array, so a record costs a few objects
 * instead of one per entry.
 */
export interface PackedHistory {
  /** The retained entries' bytes, back to back, oldest first. */
  readonly bytes: Buffer;
  /** `PACKED_ENTRY` numbers per entry (stream index, offset, length), then produced ×3 and dropped ×3. */
  readonly layout: Float64Array;
}

const PACKED_ENTRY = 3;

export class OutputHistory {
  readonly #entryOverheadBytes: number;
  readonly #log: OutputEntry[] = [];
  /** Index into #log of the oldest retained entry (entries before it are evicted). */
  #head = 0;
  /** Sequence number of #log[#head]. */
  #base = 0;
  #retainedCost = 0;
  /** Bytes pushed so far, all streams. */
  #total = 0;
  readonly #produced: OutputOffsets = { stdout: 0, stderr: 0, pty: 0 };
  /** Per stream, the position before which every byte has been evicted. */
  readonly #dropped: OutputOffsets = { stdout: 0, stderr: 0, pty: 0 };

  constructor(entryOverheadBytes: number) {
    this.#entryOverheadBytes = entryOverheadBytes;
  }

  /** Bytes produced so far in each stream. */
  get produced(): Readonly<OutputOffsets> {
    return this.#produced;
  }

  /** Per stream, the oldest position still retained. */
  get dropped(): Readonly<OutputOffsets> {
    return this.#dropped;
  }

  /** Memory the log holds now (entries' capacity plus their overhead). */
  get retainedBytes(): number {
    return this.#retainedCost;
  }

  /** Bytes pushed so far, all streams. */
  get total(): number {
    return this.#total;
  }

  /** Sequence number of the oldest retained entry (of the next entry when the log is empty). */
  get firstSeq(): number {
    return this.#base;
  }

  /** Sequence number of the newest entry (firstSeq - 1 when the log is empty). */
  get lastSeq(): number {
    return this.#base + (this.#log.length - this.#head) - 1;
  }

  /** Bytes (all streams) pushed before the oldest retained entry. */
  get firstStart(): number {
    return this.#log[this.#head]?.start ?? this.#total;
  }

  /** The entry with sequence number `seq`, if retained. */
  entry(seq: number): OutputEntry | undefined {
    return seq >= this.#base ? this.#log[this.#head + (seq - this.#base)] : undefined;
  }

  /** Everything retained, packed (see PackedHistory): for an ended process, nothing is appended after. */
  pack(): PackedHistory {
    const n = this.#log.length - this.#head;
    let size = 0;
    for (let i = this.#head; i < this.#log.length; i++) size += (this.#log[i] as OutputEntry).len;
    const bytes = Buffer.allocUnsafeSlow(size);
    const layout = new Float64Array(n * PACKED_ENTRY + 2 * OUTPUT_STREAMS.length);
    let at = 0;
    let k = 0;
    for (let i = this.#head; i < this.#log.length; i++) {
      const e = this.#log[i] as OutputEntry;
      e.buf.copy(bytes, at, 0, e.len);
      at += e.len;
      layout[k++] = OUTPUT_STREAMS.indexOf(e.stream);
      layout[k++] = e.offset;
      layout[k++] = e.len;
    }
    for (const s of OUTPUT_STREAMS) layout[k++] = this.#produced[s];
    for (const s of OUTPUT_STREAMS) layout[k++] = this.#dropped[s];
    return { bytes, layout };
  }

  /** A history holding what `pack()` packed (the entries are views into its buffer). */
  static unpack(packed: PackedHistory, entryOverheadBytes: number): OutputHistory {
    const h = new OutputHistory(entryOverheadBytes);
    const { bytes, layout } = packed;
    const entries = (layout.length - 2 * OUTPUT_STREAMS.length) / PACKED_ENTRY;
    let k = entries * PACKED_ENTRY;
    for (const s of OUTPUT_STREAMS) h.#produced[s] = layout[k++] as number;
    for (const s of OUTPUT_STREAMS) h.#dropped[s] = layout[k++] as number;
    const total = OUTPUT_STREAMS.reduce((sum, s) => sum + h.#produced[s], 0);
    let at = 0;
    let start = total - bytes.byteLength;
    for (k = 0; k < entries * PACKED_ENTRY; ) {
      const stream = OUTPUT_STREAMS[layout[k++] as number] as OutputStream;
      const offset = layout[k++] as number;
      const len = layout[k++] as number;
      const entry: OutputEntry = { stream, offset, start, buf: bytes.subarray(at, at + len), len, mergeable: false };
      h.#log.push(entry);
      h.#retainedCost += h.#costOf(entry);
      at += len;
      start += len;
    }
    h.#total = total;
    return h;
  }

  /** Appends one read, merging a small one into the growing tail entry of its stream. */
  append(stream: OutputStream, data: Buffer): void {
    const n = data.byteLength;
    const tail = this.#log.length > this.#head ? this.#log[this.#log.length - 1] : undefined;
    if (tail?.mergeable && tail.stream === stream && n < MERGE_BELOW_BYTES && tail.len + n <= MERGED_ENTRY_MAX_BYTES) {
      if (tail.len + n > tail.buf.byteLength) {
        // Grow by doubling (readers already handed a view keep the old buffer; its bytes never change).
        const grown = Buffer.allocUnsafeSlow(Math.min(MERGED_ENTRY_MAX_BYTES, Math.max(256, 2 * (tail.len + n))));
        tail.buf.copy(grown, 0, 0, tail.len);
        this.#retainedCost += grown.byteLength - tail.buf.byteLength;
        tail.buf = grown;
      }
      data.copy(tail.buf, tail.len);
      tail.len += n;
    } else {
      let buf = data;
      let mergeable = false;
      // Small reads, and views into a larger pooled buffer, are copied into a buffer of their own
      // so that what the log counts is the memory it really holds. (allocUnsafeSlow: Buffer.from
      // would copy into the shared pool slab, which has the same problem.)
      if (n < MERGE_BELOW_BYTES || data.buffer.byteLength > 2 * n) {
        buf = Buffer.allocUnsafeSlow(n);
        data.copy(buf);
        mergeable = n < MERGE_BELOW_BYTES;
      }
      const entry: OutputEntry = { stream, offset: this.#produced[stream], start: this.#total, buf, len: n, mergeable };
      this.#log.push(entry);
      this.#retainedCost += this.#costOf(entry);
    }
    this.#produced[stream] += n;
    this.#total += n;
  }

  /**
   * Drops the oldest entries while the log costs more than `limitBytes`, more than `keepLast`
   * entries remain and the oldest is older than `pinnedSeq` (what some reader still needs).
   */
  evict(limitBytes: number, pinnedSeq: number, keepLast: number): void {
    while (this.#retainedCost > limitBytes && this.#log.length - this.#head > keepLast && this.#base < pinnedSeq) {
      const e = this.#log[this.#head] as OutputEntry;
      this.#log[this.#head++] = undefined as unknown as OutputEntry;
      this.#base++;
      this.#retainedCost -= this.#costOf(e);
      this.#dropped[e.stream] = e.offset + e.len;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#log.length) {
      this.#log.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #costOf(e: OutputEntry): number {
    return e.buf.byteLength + this.#entryOverheadBytes;
  }
}
