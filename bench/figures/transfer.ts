/**
 * 1 GiB upload and download over `/files`.
 *  - floors: `cp` of the file on the same disk, and raw loopback TCP (a Perl sender and receiver
 *    moving the file through one socket); the ratio is to the slower of the two;
 *  - peer: `scp` over the kept connection (OpenSSH 9 speaks SFTP underneath);
 *  - ours: the e2b SDK's `files.write(path, ReadableStream)` (octet-stream upload) and
 *    `files.read(path, { format: 'stream' })` written to a file, with the daemon's RSS sampled
 *    throughout (growth = peak − RSS before). Node's fetch adds `Accept-Encoding: gzip, deflate`
 *    to the SDK's download, so the daemon gzips it (as Go envd does for that header).
 *  - diagnostic: the same transfers with curl (no compression asked), to separate the daemon's
 *    own rate from the SDK's and Node's fetch.
 */
import { spawn, spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, rmSync, statSync } from "node:fs";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Sandbox } from "e2b";
import { ROOT, type Runtime } from "../../test/e2e/harness.ts";
import { cpuSecondsOf, freePort, median, memoryOf, PeakSampler, sleep, timeOnce } from "../lib/measure.ts";

const BARE_FILES = join(fileURLToPath(new URL("../lib/", import.meta.url)), "bare-files.ts");

/** Writes `bytes` of random data to `path` (page cache warm afterwards). */
export function makeSourceFile(path: string, bytes: number): void {
  const r = spawnSync("sh", ["-c", `head -c ${bytes} /dev/urandom > '${path}'`]);
  if (r.status !== 0 || statSync(path).size !== bytes) throw new Error(`could not create ${path}`);
}

const PERL_TCP = String.raw`
use strict; use IO::Socket::INET; use Time::HiRes qw(time);
my ($file) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1, ReuseAddr => 1) or die "listen: $!";
my $port = $l->sockport; my $t0 = time;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
  my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port) or die "connect: $!";
  open my $f, "<:raw", $file or die "$file: $!"; my $buf;
  while (my $n = sysread $f, $buf, 1 << 20) { my $o = 0; while ($o < $n) { $o += syswrite($s, $buf, $n - $o, $o) // die "write: $!"; } }
  exit 0;
}
my $c = $l->accept or die "accept: $!"; my ($buf, $total) = ("", 0);
while (my $n = sysread $c, $buf, 1 << 20) { $total += $n; }
waitpid $pid, 0; printf "%d %.6f\n", $total, time - $t0;
`;

export interface TransferFloor {
  /** MB/s of `cp` on the same disk. */
  diskCopyMBps: number;
  /** MB/s of a file through one loopback TCP socket, or undefined without Perl. */
  tcpMBps: number | undefined;
}

export async function measureTransferFloor(src: string, dst: string, bytes: number, reps: number): Promise<TransferFloor> {
  const copy: number[] = [];
  const tcp: number[] = [];
  for (let i = 0; i < reps; i++) {
    copy.push(bytes / 1e6 / (await timeOnce(["cp", src, dst])));
    rmSync(dst, { force: true });
    const r = spawnSync("perl", ["-e", PERL_TCP, src], { encoding: "utf8" });
    if (r.status === 0) {
      const [total, s] = r.stdout.trim().split(" ").map(Number) as [number, number];
      if (total === bytes) tcp.push(bytes / 1e6 / s);
    }
  }
  return { diskCopyMBps: median(copy), tcpMBps: tcp.length > 0 ? median(tcp) : undefined };
}

export interface ScpResult {
  uploadMBps: number;
  downloadMBps: number;
}

export async function measureScp(scp: string[], host: string, src: string, remote: string, local: string, bytes: number, reps: number): Promise<ScpResult> {
  const up: number[] = [];
  const down: number[] = [];
  for (let i = 0; i < reps; i++) {
    up.push(bytes / 1e6 / (await timeOnce([...scp, src, `${host}:${remote}`])));
    down.push(bytes / 1e6 / (await timeOnce([...scp, `${host}:${remote}`, local])));
    if (statSync(local).size !== bytes) throw new Error("scp download is short");
    rmSync(local, { force: true });
  }
  return { uploadMBps: median(up), downloadMBps: median(down) };
}

export interface SdkBareTransfer {
  uploadMBps: number;
  downloadMBps: number;
  /** CPU seconds of the SDK's process (this one) per GiB moved, each way. */
  clientCpuPerGiB: { upload: number; download: number };
  /** CPU seconds of the server per GiB moved, each way. */
  serverCpuPerGiB?: { upload: number; download: number };
}

/**
 * The e2b SDK against the same runtime serving a bare `/files` (bench/lib/bare-files.ts), the
 * same calls as measureOursTransfer: what the client reaches when the server costs next to
 * nothing. Client and server share the machine's cores, as with our daemon.
 */
export async function measureSdkBare(runtime: Runtime, src: string, remote: string, local: string, bytes: number, reps: number): Promise<SdkBareTransfer> {
  const port = await freePort();
  const server = spawn(join(ROOT, "node_modules", ".bin", runtime), [BARE_FILES, String(port)], { stdio: "ignore" });
  const exited = new Promise((r) => server.once("exit", r));
  try {
    const url = `http://127.0.0.1:${port}`;
    const deadline = performance.now() + 30_000;
    while (!(await fetch(`${url}/files?path=${encodeURIComponent(src)}`, { method: "HEAD" }).then((r) => r.ok, () => false))) {
      if (server.exitCode !== null || performance.now() > deadline) throw new Error(`bare /files server (${runtime}) did not start`);
      await sleep(20);
    }
    const sbx = await Sandbox.create({ debug: true, sandboxUrl: url });
    const { up, down, cpu, serverCpu } = await sdkRoundTrips(sbx, { serverPid: server.pid as number, src, remote, local, bytes, reps });
    return {
      uploadMBps: median(up),
      downloadMBps: median(down),
      clientCpuPerGiB: { upload: median(cpu.upload), download: median(cpu.download) },
      serverCpuPerGiB: { upload: median(serverCpu.upload), download: median(serverCpu.download) },
    };
  } finally {
    server.kill("SIGTERM");
    await exited;
  }
}

const cpuSeconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

/**
 * `reps` SDK round trips of `src`: `files.write` from a ReadableStream to `remote`, then
 * `files.read` as a stream into `local`; MB/s, and this process's and the server's CPU per GiB of
 * each, sizes checked.
 * Both files are removed after each round, so every upload creates its file (replacing a 1 GiB file
 * costs more than the upload: docs/benchmarks.md).
 */
async function sdkRoundTrips(
  sbx: Sandbox,
  o: { serverPid: number; user?: string; src: string; remote: string; local: string; bytes: number; reps: number },
): Promise<{ up: number[]; down: number[]; cpu: { upload: number[]; download: number[] }; serverCpu: { upload: number[]; download: number[] } }> {
  const up: number[] = [];
  const down: number[] = [];
  const cpu = { upload: [] as number[], download: [] as number[] };
  const serverCpu = { upload: [] as number[], download: [] as number[] };
  const as = o.user !== undefined ? { user: o.user } : {};
  const gib = o.bytes / 2 ** 30;
  for (let i = 0; i < o.reps; i++) {
    let c = process.cpuUsage();
    let sc = cpuSecondsOf(o.serverPid);
    let a = performance.now();
    await sbx.files.write(o.remote, Readable.toWeb(createReadStream(o.src)) as ReadableStream, { ...as, requestTimeoutMs: 0 });
    up.push(o.bytes / 1e6 / ((performance.now() - a) / 1000));
    cpu.upload.push(cpuSeconds(process.cpuUsage(c)) / gib);
    serverCpu.upload.push((cpuSecondsOf(o.serverPid) - sc) / gib);
    if (statSync(o.remote).size !== o.bytes) throw new Error("upload is short");
    c = process.cpuUsage();
    sc = cpuSecondsOf(o.serverPid);
    a = performance.now();
    const stream = await sbx.files.read(o.remote, { ...as, format: "stream", requestTimeoutMs: 0 });
    await pipeline(Readable.fromWeb(stream as never), createWriteStream(o.local) as Writable);
    down.push(o.bytes / 1e6 / ((performance.now() - a) / 1000));
    cpu.download.push(cpuSeconds(process.cpuUsage(c)) / gib);
    serverCpu.download.push((cpuSecondsOf(o.serverPid) - sc) / gib);
    if (statSync(o.local).size !== o.bytes) throw new Error("download is short");
    rmSync(o.local, { force: true });
    rmSync(o.remote, { force: true });
  }
  return { up, down, cpu, serverCpu };
}

export interface OursTransfer {
  uploadMBps: number;
  downloadMBps: number;
  /** CPU seconds of the SDK's process (this one) per GiB moved, each way. */
  clientCpuPerGiB?: { upload: number; download: number };
  /** CPU seconds of the daemon per GiB moved by the SDK, each way. */
  daemonCpuPerGiB?: { upload: number; download: number };
  /** The daemon with curl as the client (identity encoding), or why not. */
  curl: { uploadMBps: number; downloadMBps: number } | { unavailable: string };
  /** Peak RSS during the transfers minus RSS before them, MiB. */
  rssGrowthMiB: number;
  peakRssMiB: number;
}

/** Probes whether the daemon serves /files uploads at all (issue 5). */
export async function filesAvailable(url: string, user: string, path: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/files?path=${encodeURIComponent(path)}&username=${user}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: "probe",
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

export async function measureOursTransfer(
  pid: number,
  url: string,
  sbx: Sandbox,
  user: string,
  src: string,
  remote: string,
  local: string,
  bytes: number,
  reps: number,
): Promise<OursTransfer> {
  const before = memoryOf(pid).rssMiB;
  const sampler = new PeakSampler(pid, 20);
  const { up, down, cpu, serverCpu } = await sdkRoundTrips(sbx, { serverPid: pid, user, src, remote, local, bytes, reps });
  const { peakMiB } = sampler.stop();
  const curl = await measureCurlTransfer(url, user, src, remote, bytes);
  rmSync(remote, { force: true });
  return {
    uploadMBps: median(up),
    downloadMBps: median(down),
    clientCpuPerGiB: { upload: median(cpu.upload), download: median(cpu.download) },
    daemonCpuPerGiB: { upload: median(serverCpu.upload), download: median(serverCpu.download) },
    curl,
    rssGrowthMiB: peakMiB - before,
    peakRssMiB: peakMiB,
  };
}

async function measureCurlTransfer(url: string, user: string, src: string, remote: string, bytes: number): Promise<OursTransfer["curl"]> {
  if (spawnSync("curl", ["--version"], { stdio: "ignore" }).status !== 0) return { unavailable: "curl is not installed" };
  const q = (path: string) => `${url}/files?path=${encodeURIComponent(path)}&username=${encodeURIComponent(user)}`;
  try {
    // -T streams the file (--data-binary @file would read all of it into memory first).
    const up = await timeOnce(["curl", "-sSf", "-o", "/dev/null", "-X", "POST", "-H", "content-type: application/octet-stream", "-T", src, q(remote)]);
    const down = await timeOnce(["curl", "-sSf", "-o", "/dev/null", q(remote)]);
    if (statSync(remote).size !== bytes) return { unavailable: "curl upload is short" };
    return { uploadMBps: bytes / 1e6 / up, downloadMBps: bytes / 1e6 / down };
  } catch (err) {
    return { unavailable: `curl failed: ${(err as Error).message.slice(0, 120)}` };
  }
}
