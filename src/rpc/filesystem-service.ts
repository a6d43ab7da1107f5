/**
 * Filesystem service: resolve the user and path, check the request, call the domain (src/fs),
 * build messages. Errors keep their Connect codes. The one disk access of its own is the watch
 * pre-check (stat of the directory and its filesystem type, docs/protocol.md §3.5); everything else
 * goes through src/fs.
 */
import { stat } from "node:fs/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, EnvdError, fromNodeError } from "../errors.ts";
import { type Entry, entryInfo } from "../fs/entry-info.ts";
import { compileExcludes, GlobError } from "../fs/exclude-globs.ts";
import { listDir } from "../fs/list-dir.ts";
import { makeDir } from "../fs/make-dir.ts";
import { move } from "../fs/move.ts";
import { networkFsOf } from "../fs/network-mount.ts";
import { resolvePath } from "../fs/paths.ts";
import { remove } from "../fs/remove.ts";
import type { WatchEngine } from "../fs/watch-engine.ts";
import { type FsEvent, type FsEventType, Watcher } from "../fs/watcher.ts";
import type { WatcherRegistry } from "../fs/watcher-registry.ts";
import {
  type EntryInfoSchema,
  EventType,
  type Filesystem,
  type FilesystemEventSchema,
  FileType,
  ListDirResponseSchema,
} from "../gen/filesystem/filesystem_pb.js";
import { resolveUser } from "../users/resolve-user.ts";
import type { User, UserDb } from "../users/user-db.ts";
import type { Session } from "../session.ts";
import { checkResponseSize, MAX_RESPONSE_MESSAGE_BYTES } from "./message-cap.ts";
import { usernameFromAuthorization } from "../users/request-user.ts";
import { keepaliveMsOf, releaseOnAbort, waitReady } from "./stream-pump.ts";

type EntryInit = MessageInitShape<typeof EntryInfoSchema>;
type EventInit = MessageInitShape<typeof FilesystemEventSchema>;

export interface FilesystemServiceDeps {
  users: UserDb;
  session: Session;
  watches: WatchEngine;
  watchers: WatcherRegistry;
  /** Largest response message (default MAX_RESPONSE_MESSAGE_BYTES, 16 MiB: the Wrenn host's cap). */
  maxResponseBytes?: number;
}

/** Requests from the old Python SDK get the pre-0.6 message shapes (docs/protocol.md §3.6). */
const LEGACY_USER_AGENT = "connect-python";

export function createFilesystemService(deps: FilesystemServiceDeps): ServiceImpl<typeof Filesystem> {
  const { users, session, watches, watchers } = deps;
  const maxResponseBytes = deps.maxResponseBytes ?? MAX_RESPONSE_MESSAGE_BYTES;

  const requestUser = (ctx: HandlerContext): User =>
    resolveUser(users, usernameFromAuthorization(ctx.requestHeader.get("authorization")), session.defaultUser, "rpc");
  const pathOf = (path: string, user: User) => resolvePath(path, user.home, session.defaultWorkdir);
  const legacyOf = (ctx: HandlerContext): boolean => {
    if (ctx.requestHeader.get("user-agent") !== LEGACY_USER_AGENT) return false;
    ctx.responseHeader.set("x-e2b-legacy-sdk", "true");
    return true;
  };

  /** WatchDir and CreateWatcher: the same checks, then a started watcher. */
  const startWatcher = async (
    req: { path: string; recursive: boolean; includeEntry: boolean; allowNetworkMounts: boolean; exclude: string[] },
    user: User,
  ): Promise<Watcher> => {
    try {
      compileExcludes(req.exclude);
    } catch (err) {
      if (err instanceof GlobError) throw new EnvdError(Code.InvalidArgument, err.message);
      throw err;
    }
    const root = pathOf(req.path, user);
    const st = await stat(root).catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") throw new EnvdError(Code.NotFound, `path ${root} not found`, { cause: err });
      if (code === "ENOTDIR") throw new EnvdError(Code.InvalidArgument, `path ${root} not a directory`, { cause: err });
      throw fromNodeError(err, `error statting path ${root}`);
    });
    if (!st.isDirectory()) throw new EnvdError(Code.InvalidArgument, `path ${root} not a directory`);
    if (!req.allowNetworkMounts) {
      const fs = await networkFsOf(root);
      if (fs) {
        throw new EnvdError(
          Code.InvalidArgument,
          `cannot watch path on network filesystem: ${root} (${fs}); set allowNetworkMounts to watch it anyway`,
        );
      }
    }
    return Watcher.start(watches, { root, recursive: req.recursive, includeEntry: req.includeEntry, names: users, exclude: req.exclude });
  };

  return {
    async stat(req, ctx) {
      const legacy = legacyOf(ctx);
      const user = requestUser(ctx);
      return { entry: entryMessage(await entryInfo(pathOf(req.path, user), users), legacy) };
    },

    async makeDir(req, ctx) {
      const legacy = legacyOf(ctx);
      const user = requestUser(ctx);
      const path = pathOf(req.path, user);
      await makeDir(path, user);
      return { entry: entryMessage(await entryInfo(path, users), legacy) };
    },

    async move(req, ctx) {
      const legacy = legacyOf(ctx);
      const user = requestUser(ctx);
      const source = pathOf(req.source, user);
      const destination = pathOf(req.destination, user);
      await move(source, destination, user);
      return { entry: entryMessage(await entryInfo(destination, users), legacy) };
    },

    async listDir(req, ctx) {
      const legacy = legacyOf(ctx);
      const user = requestUser(ctx);
      const path = pathOf(req.path, user);
      const entries = await listDir(path, req.depth, users);
      const msg = create(ListDirResponseSchema, { entries: entries.map((e) => entryMessage(e, legacy)) });
      return checkResponseSize(ListDirResponseSchema, msg, ctx, `listing ${path} to depth ${req.depth || 1} (${entries.length} entries)`, maxResponseBytes);
    },

    async remove(req, ctx) {
      legacyOf(ctx);
      const user = requestUser(ctx);
      await remove(pathOf(req.path, user));
      return {};
    },

    async *watchDir(req, ctx) {
      const legacy = legacyOf(ctx);
      const user = requestUser(ctx);
      using watcher = await startWatcher(req, user);
      // The client leaving releases the watch at once, also while this generator is parked in a
      // write that backpressure holds (a reader that stopped reading, then went away).
      using _released = releaseOnAbort(ctx.signal, () => watcher.close());
      const keepaliveMs = keepaliveMsOf(ctx.requestHeader);
      yield { event: { case: "start", value: {} } };
      for (;;) {
        const events = watcher.take();
        for (const ev of events) yield { event: { case: "filesystem", value: eventMessage(ev, legacy) } };
        if (events.length > 0) continue;
        const err = watcher.error;
        if (err) throw err;
        if (watcher.ended) return;
        if ((await waitReady(watcher.ready(), keepaliveMs, ctx.signal)) === "timeout") {
          yield { event: { case: "keepalive", value: {} } };
        }
      }
    },

    async createWatcher(req, ctx) {
      legacyOf(ctx);
      const user = requestUser(ctx);
      watchers.checkCapacity();
      const watcher = await startWatcher(req, user);
      return { watcherId: watchers.add(watcher) };
    },

    getWatcherEvents(req, ctx) {
      const legacy = legacyOf(ctx);
      return { events: watchers.poll(req.watcherId).map((ev) => eventMessage(ev, legacy)) };
    },

    removeWatcher(req, ctx) {
      legacyOf(ctx);
      watchers.remove(req.watcherId);
      return {};
    },
  };
}

const FILE_TYPE: Record<Entry["type"], FileType> = {
  file: FileType.FILE,
  directory: FileType.DIRECTORY,
  unspecified: FileType.UNSPECIFIED,
};

const EVENT_TYPE: Record<FsEventType, EventType> = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
};

export function entryMessage(e: Entry, legacy = false): EntryInit {
  if (legacy) return { name: e.name, type: FILE_TYPE[e.type], path: e.path };
  return {
    name: e.name,
    type: FILE_TYPE[e.type],
    path: e.path,
    size: e.size,
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    ...(e.modified ? { modifiedTime: { seconds: e.modified.seconds, nanos: e.modified.nanos } } : {}),
    ...(e.symlinkTarget !== undefined ? { symlinkTarget: e.symlinkTarget } : {}),
    ...(e.metadata ? { metadata: e.metadata } : {}),
  };
}

function eventMessage(ev: FsEvent, legacy: boolean): EventInit {
  if (legacy) return { name: ev.name, type: EVENT_TYPE[ev.type] };
  return { name: ev.name, type: EVENT_TYPE[ev.type], ...(ev.entry ? { entry: entryMessage(ev.entry) } : {}) };
}
