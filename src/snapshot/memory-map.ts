/**
 * Where the guest's physical RAM is, for the memory preloader (memory-preload.ts): the `System RAM`
 * ranges of /proc/iomem, and the /proc/kcore PT_LOAD segments that map exactly those ranges.
 * Pure: every function takes the file's contents.
 *
 * The kcore rule (as envd-rs `src/http/memory.rs`): the kernel writes one KCORE_RAM PT_LOAD per
 * contiguous System RAM range, at `vaddr = direct-map base + physical start` with `filesz` equal to
 * the range's size. There is no single segment covering all RAM, and the other kernel-space
 * segments (vmalloc, vmemmap) read back zeros for unmapped addresses without touching a physical
 * page: reading the wrong segment looks exactly like success. So the base (KASLR-randomised) is
 * derived from the data, a base is accepted only when EVERY range has its segment at base + start
 * with the exact size, and no match is an error.
 *
 * The kernel builds those segments from whole pages (walk_system_ram_range: PFN_UP(start) to
 * PFN_DOWN(end)), so a range is compared in its page-aligned form; on x86 the first range ends at
 * 0x9fbff, and an exact byte-size comparison (as envd-rs makes) would never match it.
 */

export const PAGE_BYTES = 4096;

/** A physical address range, `end` exclusive. Numbers: physical addresses stay far below 2^53. */
export interface RamRange {
  start: number;
  end: number;
}

/** One PT_LOAD program header of /proc/kcore. */
export interface KcoreSegment {
  /** File offset of the segment's first byte in /proc/kcore. */
  offset: number;
  fileSize: number;
  /** Kernel virtual address, as a bigint: kernel addresses are above 2^63. */
  vaddr: bigint;
}

/** A window of /proc/kcore that maps one System RAM range. */
export interface KcoreWindow {
  offset: number;
  bytes: number;
}

/**
 * The top-level `System RAM` ranges of /proc/iomem ("00100000-3ffdffff : System RAM"). Nested
 * lines (indented: kernel code, data, bss inside RAM) are skipped. Addresses read as zeros (an
 * unprivileged reader) give no ranges.
 */
export function parseIomemSystemRam(text: string): RamRange[] {
  const out: RamRange[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || /^\s/.test(line)) continue;
    const m = /^([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$/.exec(line);
    if (!m || (m[3] as string).trim() !== "System RAM") continue;
    const start = Number.parseInt(m[1] as string, 16);
    const end = Number.parseInt(m[2] as string, 16) + 1;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end <= start) continue;
    if (start === 0 && end === 1) continue; // "00000000-00000000": addresses hidden from this reader
    out.push({ start, end });
  }
  return out;
}

const PT_LOAD = 1;
const ELF_MAGIC = 0x464c457f; // "\x7fELF", little-endian u32

/**
 * The PT_LOAD program headers of an ELF64 little-endian core file (/proc/kcore). `head` is the
 * file's beginning: it must hold the ELF header and the whole program header table
 * (`kcoreHeaderBytes` says how much that is). Throws on anything else.
 */
export function parseKcoreLoadSegments(head: Uint8Array): KcoreSegment[] {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.byteLength < 64 || view.getUint32(0, true) !== ELF_MAGIC) throw new Error("not an ELF file");
  if (head[4] !== 2 || head[5] !== 1) throw new Error("not a 64-bit little-endian ELF file");
  const phoff = Number(view.getBigUint64(0x20, true));
  const phentsize = view.getUint16(0x36, true);
  const phnum = view.getUint16(0x38, true);
  if (phentsize < 56) throw new Error(`unexpected program header size ${phentsize}`);
  if (phoff + phnum * phentsize > head.byteLength) throw new Error("program header table is cut short");
  const out: KcoreSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (view.getUint32(at, true) !== PT_LOAD) continue;
    out.push({
      offset: Number(view.getBigUint64(at + 8, true)),
      vaddr: view.getBigUint64(at + 16, true),
      fileSize: Number(view.getBigUint64(at + 32, true)),
    });
  }
  return out;
}

/** Bytes of /proc/kcore to read for `parseKcoreLoadSegments`, from its first 64 bytes. */
export function kcoreHeaderBytes(first64: Uint8Array): number {
  const view = new DataView(first64.buffer, first64.byteOffset, first64.byteLength);
  if (first64.byteLength < 64 || view.getUint32(0, true) !== ELF_MAGIC) throw new Error("not an ELF file");
  return Number(view.getBigUint64(0x20, true)) + view.getUint16(0x36, true) * view.getUint16(0x38, true);
}

const KERNEL_SPACE_MIN = 0xffff_8000_0000_0000n;

/**
 * The kcore window of every RAM range, in range order, under one direct-map base (see the file
 * comment). Throws, naming the counts, when no base fits every range.
 */
export function matchRamSegments(allRanges: readonly RamRange[], segments: readonly KcoreSegment[]): KcoreWindow[] {
  const ranges = allRanges.map(pageAligned).filter((r) => r.end > r.start);
  if (ranges.length === 0) throw new Error("no System RAM ranges to match");
  const bases = new Set<bigint>();
  for (const s of segments) {
    if (s.vaddr < KERNEL_SPACE_MIN) continue;
    for (const r of ranges) if (s.fileSize === r.end - r.start) bases.add(s.vaddr - BigInt(r.start));
  }
  for (const base of [...bases].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const out: KcoreWindow[] = [];
    for (const r of ranges) {
      const bytes = r.end - r.start;
      const seg = segments.find((s) => s.vaddr === base + BigInt(r.start) && s.fileSize === bytes);
      if (!seg) break;
      out.push({ offset: seg.offset, bytes });
    }
    if (out.length === ranges.length) return out;
  }
  throw new Error(
    `no direct-map base maps all ${ranges.length} System RAM ranges onto the ${segments.length} PT_LOAD segments of /proc/kcore (${bases.size} candidate bases tried)`,
  );
}

/** The whole pages inside `r` (the kernel's PFN_UP(start) .. PFN_DOWN(end)). */
export function pageAligned(r: RamRange): RamRange {
  return { start: Math.ceil(r.start / PAGE_BYTES) * PAGE_BYTES, end: Math.floor(r.end / PAGE_BYTES) * PAGE_BYTES };
}

/** Pages of 4 KiB a walk over `ranges` touches (a partial last page counts). */
export function pagesIn(ranges: readonly { bytes: number }[]): number {
  return ranges.reduce((n, r) => n + Math.ceil(r.bytes / PAGE_BYTES), 0);
}
