/**
 * The memory preload walk, on its own thread (memory-preload.ts starts it): touches one byte per
 * 4 KiB page of every System RAM range, through /dev/mem, else through the /proc/kcore segments
 * that map those ranges (memory-map.ts). Each read makes the hypervisor fault the page in. The
 * reads block (one syscall per page), which is why this is not on the event loop.
 *
 * Protocol: `workerData` is a WalkRequest. `control` is shared: control[0] is the stop flag (the
 * main thread sets it to 1 on cancel or a new lifecycle; checked before every page), control[1]
 * and control[2] are the pages and bytes read so far (written every 256 pages). The one message
 * to `parentPort` is a WalkResult.
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import {
  type KcoreWindow,
  kcoreHeaderBytes,
  matchRamSegments,
  PAGE_BYTES,
  parseIomemSystemRam,
  parseKcoreLoadSegments,
  type RamRange,
} from "./memory-map.ts";
import { controlViews, type WalkRequest, type WalkResult } from "./memory-preload-protocol.ts";

const PROGRESS_EVERY_PAGES = 256;

class Stopped extends Error {}

function walk(req: WalkRequest): WalkResult {
  const { flags, counters } = controlViews(req.control);
  const stopped = () => Atomics.load(flags, 0) !== 0;
  let ranges: RamRange[];
  try {
    ranges = parseIomemSystemRam(readFileSync(req.iomemPath, "utf8"));
  } catch (err) {
    return { ok: false, stopped: false, error: `iomem: ${(err as Error).message}` };
  }
  if (ranges.length === 0) return { ok: false, stopped: false, error: `no System RAM ranges in ${req.iomemPath} (is envd root?)` };

  let pages = 0;
  const buf = new Uint8Array(1);
  const touch = (fd: number, windows: readonly KcoreWindow[]) => {
    for (const w of windows) {
      for (let off = w.offset; off < w.offset + w.bytes; off += PAGE_BYTES) {
        if (stopped()) throw new Stopped();
        if (readSync(fd, buf, 0, 1, off) !== 1) throw new Error(`short read at offset 0x${off.toString(16)}`);
        pages++;
        if (pages % PROGRESS_EVERY_PAGES === 0) {
          counters[0] = pages;
          counters[1] = pages * PAGE_BYTES;
        }
      }
    }
  };
  const done = (source: "/dev/mem" | "/proc/kcore"): WalkResult => {
    counters[0] = pages;
    counters[1] = pages * PAGE_BYTES;
    return { ok: true, stopped: stopped(), source, regions: ranges.length, pages, bytes: pages * PAGE_BYTES };
  };
  const withFile = (path: string, fn: (fd: number) => void) => {
    const fd = openSync(path, "r");
    try {
      fn(fd);
    } finally {
      closeSync(fd);
    }
  };

  let devMemError: string;
  try {
    withFile(req.devMemPath, (fd) => touch(fd, ranges.map((r) => ({ offset: r.start, bytes: r.end - r.start }))));
    return done("/dev/mem");
  } catch (err) {
    if (err instanceof Stopped) return done("/dev/mem");
    devMemError = (err as Error).message;
  }
  // Most kernels refuse /dev/mem above the first MiB (CONFIG_STRICT_DEVMEM): start again on kcore.
  pages = 0;
  counters[0] = 0;
  counters[1] = 0;
  try {
    withFile(req.kcorePath, (fd) => {
      const first = new Uint8Array(64);
      if (readSync(fd, first, 0, 64, 0) !== 64) throw new Error("too short for an ELF header");
      const head = new Uint8Array(kcoreHeaderBytes(first));
      if (readSync(fd, head, 0, head.length, 0) !== head.length) throw new Error("program headers cut short");
      touch(fd, matchRamSegments(ranges, parseKcoreLoadSegments(head)));
    });
    return done("/proc/kcore");
  } catch (err) {
    if (err instanceof Stopped) return done("/proc/kcore");
    return { ok: false, stopped: false, error: `${req.devMemPath}: ${devMemError}; ${req.kcorePath}: ${(err as Error).message}` };
  }
}

if (parentPort) parentPort.postMessage(walk(workerData as WalkRequest));
