/**
 * Block-device volumes (Wrenn: `POST /volumes/mount`, `POST /volumes/unmount`; envd-rs
 * `src/http/volumes.rs`). The host attaches a virtio-blk disk with a serial and asks us to mount it:
 *
 *  1. the serial must be non-empty ASCII letters and digits (it is compared with sysfs and never
 *     reaches a command line otherwise) → else 400 `invalid volume serial`;
 *  2. the device is the `vd*` entry of /sys/block whose `serial` matches, polled for up to 5 s
 *     (a disk attached at boot may not be enumerated yet) → else 404 `no block device with serial X`;
 *  3. `blkid <dev>`: exit 0 with output = a filesystem (or any other signature) is there and is
 *     left alone; exit 2, or exit 0 with no output (busybox) = blank; anything else → 500. Before
 *     formatting we also check that the first and last MiB are zeros: a signature blkid does not
 *     know must not be overwritten either (409, nothing written);
 *  4. blank → `mkfs.ext4 -q -F <dev>`;
 *  5. `mkdir -p`, then `mount <dev> <path>` with no `-t` (the kernel detects the type). The path
 *     already being a mount point of this device is success; of another device → 409;
 *  6. only a filesystem made here gets mode 1777 on its root.
 *
 * Unmount is best effort, as the host uses it before a destroy: sync, then `umount`, errors only
 * logged, always 204. Operations are serialised (one lock).
 */
import { closeSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, chmodSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { AsyncLock } from "./async-lock.ts";
import { type CommandRunner, runCommand } from "./volume-mounts.ts";

export const SERIAL_POLL_ATTEMPTS = 50;
export const SERIAL_POLL_INTERVAL_MS = 100;
/** Longest one blkid, mkfs, mount or umount may run. */
const COMMAND_TIMEOUT_MS = 60_000;
const BLANK_CHECK_BYTES = 1 << 20;

export interface BlockVolumesOptions {
  log: Logger;
  /** /sys/block (ENVD_SYS_BLOCK_DIR: tests point it at a directory of their own). */
  sysBlockDir?: string;
  /** /dev (ENVD_DEV_DIR). */
  devDir?: string;
  run?: CommandRunner;
  /** sync(2) of every filesystem. */
  sync?: () => Promise<void>;
  pollIntervalMs?: number;
}

export interface MountRequest {
  serial: string;
  mountPath: string;
}

export interface MountOutcome {
  device: string;
  formatted: boolean;
  alreadyMounted: boolean;
}

const bad = (message: string) => new EnvdError(Code.InvalidArgument, message);

/** Validates a /volumes/mount body (parsed JSON). Throws InvalidArgument (400). */
export function parseMountRequest(body: unknown): MountRequest {
  const b = asObject(body);
  const serial = b.serial;
  if (typeof serial !== "string" || serial === "" || !/^[A-Za-z0-9]+$/.test(serial)) throw bad("invalid volume serial");
  return { serial, mountPath: parseMountPath(b.mount_path) };
}

/** Validates a /volumes/unmount body. */
export function parseUnmountRequest(body: unknown): string {
  return parseMountPath(asObject(body).mount_path);
}

function asObject(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad("the body must be a JSON object");
  return body as Record<string, unknown>;
}

function parseMountPath(v: unknown): string {
  if (v === undefined || v === null || v === "") throw bad("mount_path is required");
  if (typeof v !== "string") throw bad("mount_path must be a string");
  if (v.includes("\0")) throw bad("mount_path must not contain NUL bytes");
  if (!isAbsolute(v)) throw bad(`mount_path must be an absolute path: '${v.slice(0, 256)}'`);
  const clean = normalize(v).replace(/(.)\/+$/, "$1");
  if (clean === "/") throw bad("mount_path must not be /");
  return clean;
}

export class BlockVolumes {
  readonly #log: Logger;
  readonly #sysBlock: string;
  readonly #dev: string;
  readonly #run: CommandRunner;
  readonly #sync: () => Promise<void>;
  readonly #pollMs: number;
  readonly #lock = new AsyncLock();

  constructor(opts: BlockVolumesOptions) {
    this.#log = opts.log;
    this.#sysBlock = opts.sysBlockDir ?? "/sys/block";
    this.#dev = opts.devDir ?? "/dev";
    this.#run = opts.run ?? runCommand;
    this.#sync = opts.sync ?? (async () => {});
    this.#pollMs = opts.pollIntervalMs ?? SERIAL_POLL_INTERVAL_MS;
  }

  /** The `/dev` path of the virtio-blk disk with this serial, polled for up to 5 s. */
  async findBySerial(serial: string, signal: AbortSignal): Promise<string> {
    for (let i = 0; i < SERIAL_POLL_ATTEMPTS; i++) {
      const dev = this.#lookup(serial);
      if (dev) return dev;
      if (signal.aborted) break;
      await new Promise((r) => setTimeout(r, this.#pollMs));
    }
    throw new EnvdError(Code.NotFound, `no block device with serial ${serial}`);
  }

  async mount(req: MountRequest, signal: AbortSignal): Promise<MountOutcome> {
    const release = await this.#lock.acquire(signal);
    try {
      return await this.#mount(req, signal);
    } finally {
      release();
    }
  }

  /** sync, then umount; failures are logged, never thrown. */
  async unmount(mountPath: string, signal: AbortSignal): Promise<void> {
    const release = await this.#lock.acquire(signal);
    try {
      await this.#sync().catch((err: unknown) => this.#log.warn("sync before unmount failed", { err: String(err) }));
      if (!mountedDevice(mountPath)) {
        this.#log.info("volume unmount: nothing mounted there", { path: mountPath });
        return;
      }
      const r = await this.#run(["umount", mountPath], AbortSignal.timeout(COMMAND_TIMEOUT_MS));
      if (r.code === 0) this.#log.info("volume unmounted", { path: mountPath });
      else this.#log.warn("volume unmount failed", { path: mountPath, output: r.output });
    } finally {
      release();
    }
  }

  async #mount(req: MountRequest, signal: AbortSignal): Promise<MountOutcome> {
    const device = await this.findBySerial(req.serial, signal);
    const deviceId = rdevOf(device);
    const current = mountedDevice(req.mountPath);
    if (current !== undefined) {
      if (current === deviceId) {
        this.#log.info("volume already mounted", { device, path: req.mountPath });
        return { device, formatted: false, alreadyMounted: true };
      }
      throw new EnvdError(Code.AlreadyExists, `${req.mountPath} is already a mount point of another device`);
    }
    // Not cut short when the caller leaves: a mkfs killed half-way would leave a disk that is
    // neither blank nor a filesystem, which every later mount refuses.
    const cmd = (argv: [string, ...string[]]) => this.#run(argv, AbortSignal.timeout(COMMAND_TIMEOUT_MS));
    const probe = await cmd(["blkid", device]);
    let formatted = false;
    if (probe.code === 2 || (probe.code === 0 && probe.output === "")) {
      const nonBlank = firstNonZero(device);
      if (nonBlank !== undefined) {
        throw new EnvdError(
          Code.AlreadyExists,
          `${device} has no filesystem blkid knows, but holds data (a non-zero byte at offset ${nonBlank}); refusing to format it`,
        );
      }
      const mkfs = await cmd(["mkfs.ext4", "-q", "-F", device]);
      if (mkfs.code !== 0) throw internal(`mkfs.ext4 failed: ${mkfs.output || `exit ${mkfs.code}`}`);
      formatted = true;
      this.#log.info("volume formatted with ext4", { device });
    } else if (probe.code !== 0) {
      throw internal(`blkid probe failed (exit ${probe.code}): ${probe.output}`);
    } else {
      this.#log.info("volume has a filesystem; not formatting", { device, blkid: probe.output });
    }
    try {
      mkdirSync(req.mountPath, { recursive: true });
    } catch (err) {
      throw internal(`create mount dir: ${(err as Error).message}`);
    }
    const m = await cmd(["mount", device, req.mountPath]);
    if (m.code !== 0) {
      // A concurrent mount by someone else, or an old util-linux wording: success if it is ours now.
      if (mountedDevice(req.mountPath) === deviceId) return { device, formatted, alreadyMounted: true };
      throw internal(`mount failed: ${m.output || `exit ${m.code}`}`);
    }
    if (formatted) {
      try {
        chmodSync(req.mountPath, 0o1777);
      } catch (err) {
        this.#log.warn("could not open up the fresh volume's root", { path: req.mountPath, err: String(err) });
      }
    }
    this.#log.info("volume mounted", { device, path: req.mountPath, formatted });
    return { device, formatted, alreadyMounted: false };
  }

  #lookup(serial: string): string | undefined {
    let names: string[];
    try {
      names = readdirSync(this.#sysBlock);
    } catch {
      return undefined;
    }
    for (const name of names.sort()) {
      // Only virtio-blk disks carry a serial the host set; loop, ram, nbd, zram and others are skipped.
      if (!name.startsWith("vd")) continue;
      try {
        if (readFileSync(join(this.#sysBlock, name, "serial"), "utf8").trim() === serial) return join(this.#dev, name);
      } catch {
        // no serial file
      }
    }
    return undefined;
  }
}

function internal(message: string): EnvdError {
  return new EnvdError(Code.Internal, message);
}

/** "major:minor" of a block device node, as /proc/self/mountinfo spells it. */
export function rdevOf(path: string): string {
  const st = statSync(path);
  if (!st.isBlockDevice()) throw new EnvdError(Code.FailedPrecondition, `${path} is not a block device`);
  return devString(st.rdev);
}

/** glibc's major()/minor() of a dev_t. */
export function devString(dev: number): string {
  const big = BigInt(dev);
  const major = ((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn);
  const minor = (big & 0xffn) | ((big >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** "major:minor" of what is mounted at `path` (the topmost mount), or undefined. */
export function mountedDevice(path: string, mountinfo = readMountinfo()): string | undefined {
  let found: string | undefined;
  for (const line of mountinfo.split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    const mountPoint = (f[4] as string).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (mountPoint === path) found = f[2];
  }
  return found;
}

function readMountinfo(): string {
  try {
    return readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return "";
  }
}

/** Offset of the first non-zero byte in the first or last MiB of a device, or undefined. */
export function firstNonZero(device: string): number | undefined {
  const fd = openSync(device, "r");
  try {
    const size = blockDeviceBytes(device, fd);
    const buf = Buffer.alloc(BLANK_CHECK_BYTES);
    const windows = [0, Math.max(0, size - BLANK_CHECK_BYTES)];
    for (const start of windows) {
      const n = readSync(fd, buf, 0, Math.min(BLANK_CHECK_BYTES, size), start);
      const i = buf.subarray(0, n).findIndex((b) => b !== 0);
      if (i !== -1) return start + i;
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** A block device's size: fstat says 0 for one, sysfs knows it in 512-byte sectors. */
function blockDeviceBytes(device: string, fd: number): number {
  const st = fstatSync(fd);
  if (!st.isBlockDevice()) return st.size;
  const [major, minor] = devString(st.rdev).split(":");
  try {
    return Number(readFileSync(`/sys/dev/block/${major}:${minor}/size`, "utf8").trim()) * 512;
  } catch {
    throw new EnvdError(Code.Internal, `cannot read the size of ${device}`);
  }
}
