/**
 * A QEMU microVM for the VM test: boot the kernel and initramfs that test/vm/image.sh built, reach
 * the guest's port 49983 through a forwarded host port, snapshot the whole machine to a file, and
 * restore it in a fresh QEMU process.
 *
 *   const vm = await Vm.boot({ name: "envd", port });
 *   const bootMs = await vm.waitHealthy();
 *   const saved = await vm.snapshot("/tmp/envd-vm/envd.state");   // pauses, saves, quits QEMU
 *   const restored = await Vm.restore(vm.spec, saved.file);
 *
 * QEMU runs as a child of the test process (no -daemonize), so it never outlives the test. Under
 * TCG (no usable KVM here) the guest is slow but complete; KVM is used when the host CPU has
 * hardware virtualisation (vmx/svm) and the kvm module is not the PVM flavour, which runs only
 * PVM-built guest kernels (../shared/lab/README.md).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { join } from "node:path";

export const WORK = process.env.ENVD_VM_WORK ?? "/tmp/envd-vm";
export const KERNEL = join(WORK, "kernel", "vmlinux");
export const INITRD = join(WORK, "initramfs.cpio");
export const GUEST_PORT = 49983;

export interface VmSpec {
  name: string;
  /** Host port forwarded to the guest's 49983 (127.0.0.1 only). */
  port: number;
  memMiB?: number;
  cpus?: number;
  /** The guest's init (the kernel's rdinit=): /sbin/init (busybox init) unless given. */
  init?: string;
  /** More kernel command line (e.g. `envd.flavor=wrenn`, read by the image's sysinit hook). */
  append?: string[];
  /** Raw disk images attached as virtio-blk devices with these serials (the guest's /sys/block/vd*\/serial). */
  disks?: { file: string; serial: string }[];
}

type Json = Record<string, unknown>;

/** KVM only with real hardware virtualisation; PVM's /dev/kvm cannot run a stock kernel. */
export function pickAccel(): "kvm" | "tcg" {
  if (process.env.ENVD_VM_ACCEL === "kvm" || process.env.ENVD_VM_ACCEL === "tcg") return process.env.ENVD_VM_ACCEL;
  try {
    const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
    if (existsSync("/dev/kvm") && /\b(vmx|svm)\b/.test(cpuinfo) && !existsSync("/sys/module/kvm_pvm")) return "kvm";
  } catch {
    // no /proc: TCG
  }
  return "tcg";
}

function qemuArgs(spec: VmSpec, files: { serial: string; qmp: string }): string[] {
  const accel = pickAccel();
  // Kernel command line. Under TCG the kernel's TSC calibration against the PIT fails about half
  // the time on the microvm machine (no HPET or ACPI PM timer to fall back on) and the boot hangs,
  // so hand it the host's TSC rate. init_on_free zeroes freed pages (the initramfs copy among
  // them): snapshots get much smaller. rdinit: what deploy/install.sh set up (/sbin/init is
  // busybox init).
  const cmdline = [
    "console=ttyS0 panic=-1 quiet loglevel=4 tsc=reliable no_timer_check pci=off init_on_free=1",
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd",
    `rdinit=${spec.init ?? "/sbin/init"}`,
    ...(spec.append ?? []),
  ];
  if (accel === "tcg") {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
    if (mhz) cmdline.push(`tsc_early_khz=${Math.round(Number(mhz) * 1000)}`);
  }
  return [
    "-name", spec.name,
    "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-no-reboot",
    // microvm: virtio-mmio devices described through ACPI (Debian's kernel cannot take them from
    // the command line), no PCI, no firmware.
    "-M", "microvm,acpi=on,pcie=off,rtc=on",
    ...(accel === "kvm" ? ["-accel", "kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi", "-cpu", "max"]),
    "-smp", String(spec.cpus ?? 1),
    "-m", String(spec.memMiB ?? 768),
    "-kernel", KERNEL,
    "-initrd", INITRD,
    "-append", cmdline.join(" "),
    // User-mode networking: the only way in is the forward, on loopback; the guest reaches nothing.
    "-netdev", `user,id=n0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:${spec.port}-10.0.2.15:${GUEST_PORT}`,
    "-device", "virtio-net-device,netdev=n0",
    "-object", "rng-random,id=rng0,filename=/dev/urandom",
    "-device", "virtio-rng-device,rng=rng0",
    // discard=unmap: the guest's fstrim punches holes in the image file.
    ...(spec.disks ?? []).flatMap((d, i) => [
      "-drive", `file=${d.file},if=none,id=disk${i},format=raw,discard=unmap,cache=writeback`,
      "-device", `virtio-blk-device,drive=disk${i},serial=${d.serial}`,
    ]),
    "-chardev", `file,id=ser0,path=${files.serial}`,
    "-serial", "chardev:ser0",
    "-qmp", `unix:${files.qmp},server=on,wait=off`,
  ];
}

/** A free TCP port on 127.0.0.1 (closed again before QEMU takes it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** One GET on a fresh connection (no pooling: probes must not become guest connections that linger). */
export function probe(url: string, timeoutMs = 2_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { connection: "close" }, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A minimal QMP client: one JSON object per line; commands carry an id. */
export class Qmp {
  readonly #socket: net.Socket;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  #nextId = 1;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
  }

  static async connect(path: string, timeoutMs = 20_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await Qmp.#tryConnect(path);
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`QMP ${path}: ${String(err)}`);
        await sleep(20);
      }
    }
  }

  static #tryConnect(path: string): Promise<Qmp> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(path);
      const qmp = new Qmp(socket);
      let buf = "";
      let greeted = false;
      socket.once("error", reject);
      socket.on("data", (d) => {
        buf += d.toString();
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const msg = JSON.parse(line) as Json;
          if (msg.QMP && !greeted) {
            greeted = true;
            qmp.exec("qmp_capabilities").then(() => {
              socket.off("error", reject);
              socket.on("error", () => {});
              resolve(qmp);
            }, reject);
          } else if (typeof msg.id === "number") {
            const p = qmp.#pending.get(msg.id);
            qmp.#pending.delete(msg.id);
            const error = msg.error as { class: string; desc: string } | undefined;
            if (error) p?.reject(new Error(`${error.class}: ${error.desc}`));
            else p?.resolve(msg.return);
          }
        }
      });
      socket.on("close", () => {
        for (const p of qmp.#pending.values()) p.reject(new Error("QMP connection closed"));
        qmp.#pending.clear();
      });
    });
  }

  exec<T = unknown>(command: string, args?: Json): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

export interface SnapshotResult {
  file: string;
  /** performance.now() when the guest was paused: its clocks stand still from here. */
  stoppedAt: number;
  /** QMP stop: the guest is paused. */
  pauseMs: number;
  /** Writing the migration stream (device state and RAM) to the file. */
  saveMs: number;
  bytes: number;
}

export class Vm {
  static #restores = 0;
  readonly spec: VmSpec;
  readonly url: string;
  readonly serialPath: string;
  readonly qmpPath: string;
  /** performance.now() when QEMU was spawned. */
  readonly startedAt: number;
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  #qmp: Qmp | undefined;
  #stderr = "";

  private constructor(spec: VmSpec, tag: string, incoming: boolean) {
    this.spec = spec;
    this.url = `http://127.0.0.1:${spec.port}`;
    this.serialPath = join(WORK, `${spec.name}.${tag}.serial`);
    this.qmpPath = join(WORK, `${spec.name}.${tag}.qmp`);
    rmSync(this.serialPath, { force: true });
    rmSync(this.qmpPath, { force: true });
    const args = qemuArgs(spec, { serial: this.serialPath, qmp: this.qmpPath });
    if (incoming) args.push("-incoming", "defer");
    this.startedAt = performance.now();
    this.#child = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "ignore", "pipe"] });
    this.#child.stderr?.on("data", (d: Buffer) => (this.#stderr += d.toString()));
    this.#exited = new Promise((resolve) => this.#child.once("exit", (code) => resolve(code)));
    this.#child.once("error", (err) => (this.#stderr += String(err)));
    const kill = () => this.#child.kill("SIGKILL");
    process.once("exit", kill);
    void this.#exited.then(() => process.off("exit", kill));
  }

  /** Starts QEMU; the guest boots in the background (see waitHealthy). */
  static async boot(spec: VmSpec): Promise<Vm> {
    for (const f of [KERNEL, INITRD]) if (!existsSync(f)) throw new Error(`${f} missing: run test/vm/image.sh`);
    const vm = new Vm(spec, "boot", false);
    vm.#qmp = await vm.#connectQmp();
    return vm;
  }

  /**
   * A fresh QEMU with the same machine, loading `file` (QMP migrate-incoming), then running it.
   * Resolves once the guest runs again; `loadMs` is the time the state took to load, `resumedAt`
   * the performance.now() when the guest ran again.
   */
  static async restore(spec: VmSpec, file: string): Promise<{ vm: Vm; loadMs: number; resumedAt: number }> {
    const vm = new Vm(spec, `restore${++Vm.#restores}`, true);
    const qmp = await vm.#connectQmp();
    vm.#qmp = qmp;
    const t0 = performance.now();
    await qmp.exec("migrate-incoming", { uri: `exec:cat ${shellQuote(file)}` });
    let status: string;
    for (;;) {
      status = (await qmp.exec<{ status: string }>("query-status")).status;
      if (status !== "inmigrate") break;
      await sleep(5);
    }
    const loadMs = performance.now() - t0;
    if (status === "paused" || status === "prelaunch") await qmp.exec("cont");
    else if (status !== "running") throw new Error(`restore: VM is ${status} after loading ${file}: ${vm.#stderr}`);
    return { vm, loadMs, resumedAt: performance.now() };
  }

  /** Rejects (with the serial log's tail) once QEMU has exited; never resolves. For Promise.race. */
  failOnExit(): Promise<never> {
    return this.#exited.then((code) => {
      throw new Error(`qemu exited with ${code}: ${this.#stderr.trim()}\n${this.serialTail()}`);
    });
  }

  async #connectQmp(): Promise<Qmp> {
    const exited = this.#exited.then((code) => {
      throw new Error(`qemu exited with ${code}: ${this.#stderr.trim()}`);
    });
    return Promise.race([Qmp.connect(this.qmpPath), exited]);
  }

  /** Polls GET /health until it answers 2xx; resolves with the ms since QEMU was spawned. */
  async waitHealthy(timeoutMs = 180_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let exited = false;
    void this.#exited.then(() => (exited = true));
    for (;;) {
      try {
        const status = await probe(`${this.url}/health`, 1_000);
        if (status >= 200 && status < 300) return performance.now() - this.startedAt;
      } catch {
        // not up yet
      }
      if (exited) throw new Error(`qemu exited: ${this.#stderr.trim()}\n${this.serialTail()}`);
      if (performance.now() > deadline) throw new Error(`no /health answer in ${timeoutMs} ms\n${this.serialTail()}`);
      await sleep(20);
    }
  }

  /**
   * Pauses the guest, writes its whole state (devices and RAM) to `file` through QEMU's migration
   * stream, then quits this QEMU: after a snapshot the machine exists only in the file.
   */
  async snapshot(file: string): Promise<SnapshotResult> {
    const qmp = this.#qmp as Qmp;
    rmSync(file, { force: true });
    const t0 = performance.now();
    await qmp.exec("stop");
    const stoppedAt = performance.now();
    const pauseMs = stoppedAt - t0;
    // QEMU 7.2 caps migration at 32 MiB/s unless told otherwise; QEMU 7.2 has no file: URI.
    await qmp.exec("migrate-set-parameters", { "max-bandwidth": 1e12 });
    const t1 = performance.now();
    await qmp.exec("migrate", { uri: `exec:cat > ${shellQuote(file)}` });
    let m: { status: string; "error-desc"?: string };
    for (;;) {
      m = await qmp.exec("query-migrate");
      if (m.status === "completed" || m.status === "failed" || m.status === "cancelled") break;
      await sleep(10);
    }
    const saveMs = performance.now() - t1;
    if (m.status !== "completed") {
      await qmp.exec("cont").catch(() => {});
      throw new Error(`snapshot ${m.status}: ${m["error-desc"] ?? ""}`);
    }
    await this.kill();
    return { file, stoppedAt, pauseMs, saveMs, bytes: statSync(file).size };
  }

  /** Quits QEMU (QMP quit, then SIGKILL). Idempotent. */
  async kill(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      await this.#qmp?.exec("quit").catch(() => {});
      const timer = setTimeout(() => this.#child.kill("SIGKILL"), 3_000);
      await this.#exited;
      clearTimeout(timer);
    }
    this.#qmp?.close();
    rmSync(this.qmpPath, { force: true });
  }

  serialTail(lines = 30): string {
    try {
      return readFileSync(this.serialPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no serial log)";
    }
  }
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
