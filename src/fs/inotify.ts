/**
 * inotify(7) constants and the decoding of its event records. Pure: no system calls here.
 */

export const IN_MODIFY = 0x2;
export const IN_ATTRIB = 0x4;
export const IN_MOVED_FROM = 0x40;
export const IN_MOVED_TO = 0x80;
export const IN_CREATE = 0x100;
export const IN_DELETE = 0x200;
export const IN_DELETE_SELF = 0x400;
export const IN_MOVE_SELF = 0x800;
export const IN_UNMOUNT = 0x2000;
export const IN_Q_OVERFLOW = 0x4000;
export const IN_IGNORED = 0x8000;
export const IN_ONLYDIR = 0x1000000;
export const IN_DONT_FOLLOW = 0x2000000;
export const IN_ISDIR = 0x40000000;

export const IN_NONBLOCK = 0o4000;
export const IN_CLOEXEC = 0o2000000;

/** What a watch asks for: the events fsnotify (and so E2B envd) subscribes to. */
export const WATCH_MASK =
  IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF;

/** Size of `struct inotify_event` without its name. */
export const EVENT_HEADER_BYTES = 16;

export interface RawEvent {
  wd: number;
  mask: number;
  cookie: number;
  /** Name inside the watched directory; "" for an event on the directory itself. */
  name: string;
}

/** Decodes the `struct inotify_event` records in `buf[0, length)`. */
export function parseEvents(buf: Uint8Array, length: number): RawEvent[] {
  const view = new DataView(buf.buffer, buf.byteOffset, length);
  const out: RawEvent[] = [];
  let off = 0;
  while (off + EVENT_HEADER_BYTES <= length) {
    const wd = view.getInt32(off, true);
    const mask = view.getUint32(off + 4, true);
    const cookie = view.getUint32(off + 8, true);
    const len = view.getUint32(off + 12, true);
    const start = off + EVENT_HEADER_BYTES;
    if (start + len > length) break;
    let end = start;
    while (end < start + len && buf[end] !== 0) end++;
    out.push({ wd, mask, cookie, name: DECODER.decode(buf.subarray(start, end)) });
    off = start + len;
  }
  return out;
}

const DECODER = new TextDecoder("utf-8");

/**
 * Our operation bits, in the order E2B envd sends the operations of one inotify event
 * (CREATE, RENAME, CHMOD, WRITE, REMOVE).
 */
export const OP_CREATE = 1;
export const OP_RENAME = 2;
export const OP_CHMOD = 4;
export const OP_WRITE = 8;
export const OP_REMOVE = 16;
export const OPS_IN_ORDER = [OP_CREATE, OP_RENAME, OP_CHMOD, OP_WRITE, OP_REMOVE] as const;

/** The operations an inotify mask stands for, as fsnotify maps them. */
export function opsOfMask(mask: number): number {
  let ops = 0;
  if (mask & (IN_CREATE | IN_MOVED_TO)) ops |= OP_CREATE;
  if (mask & (IN_MOVED_FROM | IN_MOVE_SELF)) ops |= OP_RENAME;
  if (mask & IN_ATTRIB) ops |= OP_CHMOD;
  if (mask & IN_MODIFY) ops |= OP_WRITE;
  if (mask & (IN_DELETE | IN_DELETE_SELF)) ops |= OP_REMOVE;
  return ops;
}
