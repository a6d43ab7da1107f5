/**
 * The watch worker thread: owns every inotify instance of the daemon and reads them as fast as
 * the kernel fills them, so a slow client never backs up the kernel queue (per-client buffering
 * and its bound live on the main thread, in Watcher). It blocks in poll(2) over all instances plus
 * an eventfd the main thread writes to when it has posted a command.
 *
 * Protocol (see watch-engine.ts): commands arrive on `workerData.commands` (read synchronously
 * with receiveMessageOnPort after a wake-up); replies and events go to `parentPort`.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { IN_CLOEXEC, IN_NONBLOCK, parseEvents } from "./inotify.ts";
import { EAGAIN, EINTR, type Libc, libcLoadError, loadLibc, POLLERR, POLLIN, POLLNVAL } from "../sys/libc.ts";
import { compileExcludes } from "./exclude-globs.ts";
import { type TreeEvent, WatchTree } from "./watch-tree.ts";

export type WorkerCommand =
  | { op: "watch"; id: number; root: string; recursive: boolean; exclude?: string[] }
  | { op: "unwatch"; id: number }
  /** Read every instance until its queue is empty, then answer `synced`: everything queued before is posted. */
  | { op: "sync"; token: number }
  | { op: "exit" };

export type WorkerMessage =
  | { t: "armed"; id: number; watches: number }
  | { t: "events"; id: number; events: TreeEvent[] }
  | { t: "synced"; token: number }
  | { t: "end"; id: number; kind: "overflow" | "watch-limit" | "gone" | "failed"; errno?: number; path?: string }
  | { t: "fatal"; message: string };

const READ_BUFFER_BYTES = 256 * 1024;
/** A sync reads until the queue is empty, but gives up on a tree that never stops changing. */
const SYNC_READS = 4096;
/** Reads from one instance per poll round, so one busy tree cannot starve the others. */
const READS_PER_ROUND = 8;

interface Instance {
  id: number;
  fd: number;
  tree: WatchTree;
}

const data = workerData as { wakeFd: number; commands: MessagePort };
const post = (m: WorkerMessage) => parentPort?.postMessage(m);

function run(libc: Libc): void {
  const byId = new Map<number, Instance>();
  const buf = new Uint8Array(READ_BUFFER_BYTES);
  const wakeBuf = new Uint8Array(8);
  let pollfds = new Uint8Array(8 * 16);

  const close = (inst: Instance) => {
    byId.delete(inst.id);
    libc.close(inst.fd);
  };
  const finish = (inst: Instance) => {
    const end = inst.tree.end;
    if (!end) return;
    post({ t: "end", id: inst.id, ...end });
    close(inst);
  };

  const watch = (id: number, root: string, recursive: boolean, exclude: string[]) => {
    const fd = libc.inotifyInit1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
      post({ t: "end", id, kind: "failed", errno: libc.errno(), path: root });
      return;
    }
    const tree = new WatchTree(root, recursive, {
      addWatch: (path, mask) => {
        const wd = libc.inotifyAddWatch(fd, path, mask);
        return wd < 0 ? -libc.errno() : wd;
      },
      rmWatch: (wd) => {
        libc.inotifyRmWatch(fd, wd);
      },
      readDir: (path) => {
        try {
          return readdirSync(path, { withFileTypes: true }).map((d) => ({
            name: d.name,
            isDir: d.isDirectory(),
            hasData: d.isFile() && (statSync(join(path, d.name), { throwIfNoEntry: false })?.size ?? 0) > 0,
          }));
        } catch {
          return undefined;
        }
      },
    }, compileExcludes(exclude));
    const inst = { id, fd, tree };
    byId.set(id, inst);
    if (tree.start()) {
      finish(inst);
      return;
    }
    post({ t: "armed", id, watches: tree.watchCount });
  };

  const commands = (): boolean => {
    for (;;) {
      const m = receiveMessageOnPort(data.commands);
      if (!m) return true;
      const cmd = m.message as WorkerCommand;
      if (cmd.op === "exit") return false;
      if (cmd.op === "watch") watch(cmd.id, cmd.root, cmd.recursive, cmd.exclude ?? []);
      else if (cmd.op === "sync") {
        for (const inst of [...byId.values()]) drain(inst, SYNC_READS);
        post({ t: "synced", token: cmd.token });
      } else {
        const inst = byId.get(cmd.id);
        if (inst) close(inst);
      }
    }
  };

  const drain = (inst: Instance, reads = READS_PER_ROUND) => {
    for (let i = 0; i < reads; i++) {
      const n = libc.read(inst.fd, buf, buf.length);
      if (n < 0) {
        const errno = libc.errno();
        if (errno === EAGAIN) {
          inst.tree.drained();
          return;
        }
        if (errno === EINTR) continue;
        post({ t: "end", id: inst.id, kind: "failed", errno, path: inst.tree.root });
        close(inst);
        return;
      }
      const events = inst.tree.handle(parseEvents(buf, n));
      if (events.length > 0) post({ t: "events", id: inst.id, events });
      if (inst.tree.end) {
        finish(inst);
        return;
      }
    }
  };

  for (;;) {
    const list = [...byId.values()];
    const nfds = list.length + 1;
    if (pollfds.length < nfds * 8) pollfds = new Uint8Array(nfds * 16);
    const view = new DataView(pollfds.buffer);
    const setFd = (i: number, fd: number) => {
      view.setInt32(i * 8, fd, true);
      view.setInt16(i * 8 + 4, POLLIN, true);
      view.setInt16(i * 8 + 6, 0, true);
    };
    setFd(0, data.wakeFd);
    for (const [i, inst] of list.entries()) setFd(i + 1, inst.fd);
    const ready = libc.poll(pollfds, nfds, -1);
    if (ready < 0) {
      const errno = libc.errno();
      if (errno === EINTR) continue;
      throw new Error(`poll failed: errno ${errno}`);
    }
    list.forEach((inst, i) => {
      const revents = view.getInt16((i + 1) * 8 + 6, true);
      if (!byId.has(inst.id)) return;
      if (revents & POLLIN) drain(inst);
      else if (revents & (POLLERR | POLLNVAL)) {
        post({ t: "end", id: inst.id, kind: "failed", errno: 0, path: inst.tree.root });
        close(inst);
      }
    });
    if (view.getInt16(6, true) & POLLIN) {
      libc.read(data.wakeFd, wakeBuf, 8);
      if (!commands()) break;
    }
  }
  for (const inst of [...byId.values()]) close(inst);
}

const libc = loadLibc();
if (!libc) post({ t: "fatal", message: `native calls unavailable (${libcLoadError()})` });
else {
  try {
    run(libc);
  } catch (err) {
    post({ t: "fatal", message: (err as Error).message });
  }
}
data.commands.close();
