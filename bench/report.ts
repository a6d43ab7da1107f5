/**
 * Turns the raw results into the table: one row per figure with the floor, the OpenSSH peer, our
 * value and ratio under each runtime, the target and whether it is met. Pure: no measuring here.
 */
import type { Runtime } from "../test/e2e/harness.ts";
import { isUnavailable, type Maybe, type OursRun, type Unavailable } from "./ours.ts";
import type { Memory, Percentiles } from "./lib/measure.ts";
import type { PeerMemory } from "./figures/memory.ts";
import type { SpawnFloor } from "./figures/round-trip.ts";
import type { Startup } from "./figures/startup.ts";
import type { Sizes } from "./sizes.ts";
import type { FuzzBurst } from "./figures/fuzz-burst.ts";
import type { ScpResult, SdkBareTransfer, TransferFloor } from "./figures/transfer.ts";

export interface Floors {
  spawn: SpawnFloor;
  pipeMBps: number;
  transfer: TransferFloor;
  bareStart: Partial<Record<Runtime, Startup>>;
  /** The e2b SDK against a bare /files served by each runtime (bench/lib/bare-files.ts). */
  sdkBare?: Partial<Record<Runtime, SdkBareTransfer | Unavailable>>;
}

export interface Peer {
  version: string;
  memory: PeerMemory;
  execMs: Percentiles;
  throughputMBps: number;
  scp: ScpResult;
}

export interface Results {
  sizes: Sizes;
  floors: Floors;
  peer: Peer | Unavailable;
  ours: Partial<Record<Runtime, OursRun>>;
  /** The shipped artifact (`npm run build`: Bun, compiled), for the start-up figures, and the bare server compiled alike. */
  binary: CompiledBinary | Unavailable;
}

export interface CompiledBinary {
  startup: Startup;
  bare?: Startup;
}

export interface Cell {
  value: string;
  /** Our value against the row's reference (floor, idle RSS or peer), as text. */
  ratio: string;
  met: boolean | undefined;
}

export interface Row {
  figure: string;
  floor: string;
  peer: string;
  bun: Cell;
  node: Cell;
  target: string;
}

const RUNTIMES: Runtime[] = ["bun", "node"];
const NA: Cell = { value: "not run", ratio: "", met: undefined };

const f0 = (x: number) => x.toFixed(0);
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const mbps = (x: number) => x.toFixed(0);
const times = (x: number) => `${x.toFixed(2)}×`;
const pct = (x: number) => `${(x * 100).toFixed(0)} %`;

/** Thrown by `need` inside a cell builder: the cell shows why the figure is missing. */
class Missing extends Error {
  readonly why: Unavailable;
  constructor(why: Unavailable) {
    super(why.unavailable);
    this.why = why;
  }
}

function need<T>(x: Maybe<T>): T {
  if (isUnavailable(x)) throw new Missing(x);
  return x;
}

/** One row whose cell is computed per runtime (undefined run → "not run"). */
function row(
  figure: string,
  floor: string,
  peer: string,
  target: string,
  ours: Partial<Record<Runtime, OursRun>>,
  cell: (run: OursRun, runtime: Runtime) => Cell,
): Row {
  const safe = (run: OursRun, rt: Runtime): Cell => {
    try {
      return cell(run, rt);
    } catch (err) {
      if (err instanceof Missing) return unavailableCell(err.why);
      throw err;
    }
  };
  const cells = Object.fromEntries(RUNTIMES.map((rt) => [rt, ours[rt] ? safe(ours[rt] as OursRun, rt) : NA])) as Record<Runtime, Cell>;
  return { figure, floor, peer, target, bun: cells.bun, node: cells.node };
}

const unavailableCell = (u: Unavailable): Cell => ({ value: "not available", ratio: u.unavailable, met: undefined });
const NOT_APPLICABLE: Cell = { value: "—", ratio: "", met: undefined };

/** A row for the compiled binary: it is Bun only, so the Node cell is empty. */
function binaryRow(figure: string, floor: string, peer: string, target: string, binary: Results["binary"], cell: (b: CompiledBinary) => Cell): Row {
  return { figure, floor, peer, target, bun: isUnavailable(binary) ? unavailableCell(binary) : cell(binary), node: NOT_APPLICABLE };
}

export function buildRows(r: Results): Row[] {
  const { floors, ours, sizes } = r;
  const size = (bytes: number) => (bytes >= 2 ** 30 ? `${bytes / 2 ** 30} GiB` : `${bytes / 2 ** 20} MiB`);
  const stream = size(sizes.streamBytes);
  const file = size(sizes.transferBytes);
  const peer = isUnavailable(r.peer) ? undefined : r.peer;
  const peerText = (f: (p: Peer) => string) => (peer ? f(peer) : "not available");
  const rows: Row[] = [];

  // Memory.
  const bareIdle = (rt: Runtime) => floors.bareStart[rt]?.idle.rssMiB;
  const perRuntime = (f: (rt: Runtime) => number | undefined, fmt: (x: number) => string) =>
    RUNTIMES.filter((rt) => f(rt) !== undefined)
      .map((rt) => `${rt} ${fmt(f(rt) as number)}`)
      .join(" / ");
  const sshdIdle = peerText((p) => `${f1(p.memory.idleRssMiB)} sshd (+${f1(p.memory.connectionRssMiB)} per connection)`);
  const idleCell = (m: Memory, isBun: boolean): Cell => ({
    value: `${f1(m.rssMiB)} (anon ${f1(m.anonMiB)})`,
    ratio: peer ? `${times(m.rssMiB / peer.memory.idleRssMiB)} sshd` : "",
    met: isBun ? m.rssMiB <= 40 : undefined,
  });
  rows.push(row("idle RSS after start (MiB)", `bare server: ${perRuntime(bareIdle, f1)}`, sshdIdle, "≤ 40 MB on Bun", ours, (run, rt) => idleCell(run.idle, rt === "bun")));
  const compiledBare = isUnavailable(r.binary) ? undefined : r.binary.bare;
  const compiledFloor = (f: (s: Startup) => number) => (compiledBare ? `bare server, compiled: ${f1(f(compiledBare))}` : "—");
  rows.push(
    binaryRow("idle RSS after start, compiled binary (MiB; started with a cold page cache, as a VM boots)", compiledFloor((b) => b.idle.rssMiB), sshdIdle, "≤ 35 MB and ≤ 1.3× bare compiled", r.binary, (b) => {
      const m = b.startup.idle;
      const vsBare = b.bare ? m.rssMiB / b.bare.idle.rssMiB : undefined;
      return {
        value: `${f1(m.rssMiB)} (anon ${f1(m.anonMiB)})${b.startup.coldCache ? "" : "; page cache not dropped (not root)"}`,
        ratio: [vsBare !== undefined ? `${times(vsBare)} bare` : "", peer ? `${times(m.rssMiB / peer.memory.idleRssMiB)} sshd` : ""].filter(Boolean).join("; "),
        met: m.rssMiB <= 35 && (vsBare === undefined || vsBare <= 1.3),
      };
    }),
  );
  rows.push(
    row(`RSS after ${sizes.soakCommands} commands, ${sizes.soakRestMs / 1000} s later (MiB)`, "idle RSS", "—", "no growth after the soak", ours, (run) => {
      const growth = soakGrowthMiB(run);
      return {
        value: `${f1(need(run.afterSoak).rssMiB)}; after a 2nd soak ${f1(need(run.afterSecondSoak).rssMiB)}`,
        ratio: `${times(need(run.afterSoak).rssMiB / run.idle.rssMiB)} idle; 2nd soak ${growth >= 0 ? "+" : ""}${f1(growth)}`,
        met: growth <= SOAK_GROWTH_TOLERANCE_MIB,
      };
    }),
  );
  const laterS = (sizes.burstSettleMs + sizes.retentionSettleMs) / 1000;
  const afterBurst = (
    label: string,
    pick: (run: OursRun) => Maybe<Memory>,
    later: (run: OursRun) => Maybe<Memory> | undefined,
    peak: (run: OursRun) => number | undefined,
  ) =>
    row(`RSS 10 s after ${label} (MiB; and ${laterS} s after, before the next burst)`, "idle RSS", "—", "≤ 1.5× idle", ours, (run) => {
      const m = need(pick(run));
      let p: number | undefined;
      try {
        p = peak(run);
      } catch {
        p = undefined;
      }
      const l = later(run);
      const then = l !== undefined && !isUnavailable(l) ? l : undefined;
      return {
        value: `${f1(m.rssMiB)}${p !== undefined ? ` (peak ${f1(p)})` : ""}${then ? `; ${laterS} s after ${f1(then.rssMiB)}` : ""}`,
        ratio: `${times(m.rssMiB / run.idle.rssMiB)} idle${then ? `; ${laterS} s: ${times(then.rssMiB / run.idle.rssMiB)}` : ""}`,
        met: m.rssMiB <= 1.5 * run.idle.rssMiB,
      };
    });
  rows.push(
    afterBurst(
      `${stream} stdout ×${2 * sizes.throughputReps}`,
      (r) => r.afterThroughput,
      (r) => r.laterThroughput,
      (r) => Math.max(need(r.throughputJson).peakRssMiB, need(r.throughputBinary).peakRssMiB),
    ),
  );
  rows.push(afterBurst(`${sizes.streams} streams`, (r) => r.afterStreams, (r) => r.laterStreams, (r) => need(r.streams).peakRssMiB));
  rows.push(afterBurst(`${file} transfers`, (r) => r.afterTransfer, (r) => r.laterTransfer, (r) => need(r.transfer).peakRssMiB));

  // Start-up.
  const bare = (rt: Runtime) => floors.bareStart[rt]?.medianMs;
  rows.push(
    row("start until /health answers (ms, median)", `bare server: ${perRuntime(bare, f1)}`, "—", "≤ 60 ms on Bun", ours, (run, rt) => ({
      value: f1(need(run.startup).medianMs),
      ratio: bare(rt) ? `${times(need(run.startup).medianMs / (bare(rt) as number))} bare` : "",
      met: rt === "bun" ? need(run.startup).medianMs <= 60 : undefined,
    })),
  );
  rows.push(
    binaryRow("start until /health, compiled binary (ms, median)", compiledFloor((b) => b.medianMs), "—", "≤ 1.3× bare compiled", r.binary, (b) => ({
      value: f1(b.startup.medianMs),
      ratio: b.bare ? `${times(b.startup.medianMs / b.bare.medianMs)} bare` : "",
      met: b.bare ? b.startup.medianMs <= 1.3 * b.bare.medianMs : undefined,
    })),
  );

  // The first request of each kind after a start: each loads what it needs on first use.
  const KINDS: Record<string, string> = { stat: "Stat", list: "List", download: "download", upload: "upload", h2: "HTTP/2" };
  const firstText = (s: Startup) =>
    Object.entries(s.first)
      // A status 0 is no answer (the bare node:http server does not speak h2c).
      .map(([k, f]) => `${KINDS[k] ?? k} ${f.statuses.every((st) => st === 0) ? "none" : f1(f.ms)}`)
      .join(" / ");
  const firstCell = (s: Startup): Cell => {
    const statuses = [...new Set(Object.values(s.first).flatMap((f) => f.statuses))].sort();
    return { value: firstText(s), ratio: `statuses ${statuses.join(", ")}`, met: statuses.every((st) => st >= 200 && st < 300) };
  };
  const FIRST_TARGET = "reported; every first request answers 2xx";
  rows.push(
    row(
      "first request of each kind after start (ms, median; Stat / List / download / upload / HTTP/2)",
      `bare server: ${RUNTIMES.filter((rt) => floors.bareStart[rt])
        .map((rt) => `${rt} ${firstText(floors.bareStart[rt] as Startup)}`)
        .join("; ")}`,
      "—",
      FIRST_TARGET,
      ours,
      (run) => firstCell(need(run.startup)),
    ),
  );
  rows.push(
    binaryRow("first request of each kind after start, compiled binary (ms, median)", compiledBare ? `bare server, compiled: ${firstText(compiledBare)}` : "—", "—", FIRST_TARGET, r.binary, (b) => firstCell(b.startup)),
  );

  // Round trip.
  const sp = floors.spawn.true;
  for (const q of ["p50", "p99"] as const) {
    rows.push(
      row(`commands.run('true') ${q} (ms; SDK → bash -l)`, f2(sp[q]), peerText((p) => f2(p.execMs[q])), q === "p50" ? "≤ 3× floor, faster than ssh" : "faster than ssh", ours, (run) => {
        const v = need(run.roundTrip).sdk[q];
        const faster = peer ? v < peer.execMs[q] : undefined;
        return {
          value: f2(v),
          ratio: `${times(v / sp[q])} floor`,
          met: q === "p50" ? v <= 3 * sp.p50 && faster !== false : faster,
        };
      }),
    );
  }
  rows.push(
    row("Start of `true`, no shell, p50 (ms; Connect JSON)", f2(sp.p50), peerText((p) => f2(p.execMs.p50)), "(diagnostic: the daemon's own share)", ours, (run) => ({
      value: `${f2(need(run.roundTrip).connect.p50)} (p99 ${f2(need(run.roundTrip).connect.p99)})`,
      ratio: `${times(need(run.roundTrip).connect.p50 / sp.p50)} floor`,
      met: undefined,
    })),
  );

  // Throughput.
  rows.push(
    row(`stdout ${stream}, JSON codec (MB/s; Connect client)`, mbps(floors.pipeMBps), peerText((p) => mbps(p.throughputMBps)), "faster than ssh", ours, (run) => ({
      value: mbps(need(run.throughputJson).mbps),
      ratio: `${pct(need(run.throughputJson).mbps / floors.pipeMBps)} floor; CPU s/GiB daemon ${f1(need(run.throughputJson).daemonCpuPerGiB)}, client ${f1(need(run.throughputJson).clientCpuPerGiB)}`,
      met: peer ? need(run.throughputJson).mbps > peer.throughputMBps : undefined,
    })),
  );
  rows.push(
    row(`stdout ${stream}, binary codec (MB/s; Connect client)`, mbps(floors.pipeMBps), peerText((p) => mbps(p.throughputMBps)), "≥ 50 % of floor", ours, (run) => ({
      value: mbps(need(run.throughputBinary).mbps),
      ratio: `${pct(need(run.throughputBinary).mbps / floors.pipeMBps)} floor; CPU s/GiB daemon ${f1(need(run.throughputBinary).daemonCpuPerGiB)}, client ${f1(need(run.throughputBinary).clientCpuPerGiB)}`,
      met: need(run.throughputBinary).mbps >= 0.5 * floors.pipeMBps,
    })),
  );

  // Transfers.
  const tf = floors.transfer;
  const transferFloor = tf.tcpMBps !== undefined ? Math.min(tf.diskCopyMBps, tf.tcpMBps) : tf.diskCopyMBps;
  const floorText = `${mbps(transferFloor)} (cp ${mbps(tf.diskCopyMBps)}${tf.tcpMBps !== undefined ? `, tcp ${mbps(tf.tcpMBps)}` : ""})`;
  for (const dir of ["upload", "download"] as const) {
    rows.push(
      row(`${file} ${dir} over /files (MB/s; SDK)`, floorText, peerText((p) => `${mbps(p.scp[`${dir}MBps`])} scp`), "≥ 60 % of floor, faster than scp", ours, (run) => {
        const t = need(run.transfer);
        const v = t[`${dir}MBps`];
        const clientCpu = t.clientCpuPerGiB?.[dir];
        const daemonCpu = t.daemonCpuPerGiB?.[dir];
        return {
          value: mbps(v),
          ratio: `${pct(v / transferFloor)} floor${clientCpu !== undefined ? `; CPU s/GiB ${daemonCpu !== undefined ? `daemon ${f1(daemonCpu)}, ` : ""}client ${f1(clientCpu)}` : ""}`,
          met: v >= 0.6 * transferFloor && (peer ? v > peer.scp[`${dir}MBps`] : true),
        };
      }),
    );
  }
  rows.push(
    row(`${file} over /files with curl, up / down (MB/s; diagnostic)`, floorText, peerText((p) => `${mbps(p.scp.uploadMBps)} / ${mbps(p.scp.downloadMBps)} scp`), "(the daemon without the SDK)", ours, (run) => {
      const c = need(need(run.transfer).curl);
      return { value: `${mbps(c.uploadMBps)} / ${mbps(c.downloadMBps)}`, ratio: `${pct(c.uploadMBps / transferFloor)} / ${pct(c.downloadMBps / transferFloor)} floor`, met: undefined };
    }),
  );
  rows.push(
    row(`${file} over /files, SDK against a bare server, up / down (MB/s; diagnostic)`, floorText, peerText((p) => `${mbps(p.scp.uploadMBps)} / ${mbps(p.scp.downloadMBps)} scp`), "(the SDK's own ceiling: the same runtime serving bare /files)", ours, (_run, rt) => {
      const b = floors.sdkBare?.[rt];
      if (b === undefined) throw new Missing({ unavailable: "not measured" });
      if (isUnavailable(b)) throw new Missing(b);
      return {
        value: `${mbps(b.uploadMBps)} / ${mbps(b.downloadMBps)}`,
        ratio: `CPU s/GiB up / down:${b.serverCpuPerGiB ? ` server ${f1(b.serverCpuPerGiB.upload)} / ${f1(b.serverCpuPerGiB.download)},` : ""} client ${f1(b.clientCpuPerGiB.upload)} / ${f1(b.clientCpuPerGiB.download)}`,
        met: undefined,
      };
    }),
  );
  rows.push(
    row("RSS growth during the transfers (MiB)", "—", "—", "≤ 64 MB", ours, (run) => {
      const t = need(run.transfer);
      return { value: f1(t.rssGrowthMiB), ratio: "", met: t.rssGrowthMiB <= 64 };
    }),
  );

  // Concurrency.
  rows.push(
    row(`${sizes.streams} concurrent streaming commands (SDK)`, "—", "—", "all complete; p99 first byte reported", ours, (run) => {
      const st = need(run.streams);
      return {
        value: `${st.completed}/${st.streams} in ${f1(st.wallS)} s`,
        ratio: `first byte p50 ${f0(st.firstByteMs.p50)} / p99 ${f0(st.firstByteMs.p99)} ms; started p99 ${f0(st.startMs.p99)} ms`,
        met: st.completed === st.streams,
      };
    }),
  );
  rows.push(
    row(`/health while ${sizes.streams} commands start (ms; p99)`, "—", "—", "p99 ≤ 100 ms", ours, (run) => {
      const h = need(run.streams).healthMs;
      if (!h) throw new Missing({ unavailable: "not measured" });
      return { value: f1(h.p99), ratio: `p50 ${f1(h.p50)}, max ${f0(h.max)} ms (${h.n} probes)`, met: h.p99 <= 100 };
    }),
  );

  // Watch.
  rows.push(
    row("watch event latency p50 (ms; SDK watchDir)", "—", "—", "p50 ≤ 20 ms", ours, (run) => {
      const w = need(run.watch);
      return {
        value: f2(w.latencyMs.p50),
        ratio: `p99 ${f2(w.latencyMs.p99)} ms${w.missed ? `, ${w.missed} missed` : ""}`,
        met: w.latencyMs.p50 <= 20 && w.missed === 0,
      };
    }),
  );
  return rows;
}

/**
 * RSS growth caused by a second soak identical to the first, MiB (each read after the rest). The
 * first soak also pays for warming up (JIT code, pools); the second only for what it leaks.
 */
export function soakGrowthMiB(run: OursRun): number {
  return need(run.afterSecondSoak).rssMiB - need(run.afterSoak).rssMiB;
}

/**
 * "No growth" allows this much: a collected heap moves by a few MiB between any two samples; a
 * leak of 3 KiB per command would show as ~3 MiB over 1,000 commands.
 */
export const SOAK_GROWTH_TOLERANCE_MIB = 3;

const metText = (m: boolean | undefined) => (m === undefined ? "–" : m ? "yes" : "**no**");

/** The table as Markdown (what `npm run bench` prints and docs/benchmarks.md holds). */
export function formatTable(rows: Row[]): string {
  const head = ["figure", "floor", "OpenSSH", "ours, Bun", "Bun vs ref", "ours, Node 26", "Node vs ref", "target", "met (Bun / Node)"];
  const lines = [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`];
  for (const r of rows) {
    lines.push(
      `| ${[r.figure, r.floor, r.peer, r.bun.value, r.bun.ratio, r.node.value, r.node.ratio, r.target, `${metText(r.bun.met)} / ${metText(r.node.met)}`].join(" | ")} |`,
    );
  }
  return lines.join("\n");
}

/** Memory after abuse: RSS `restMs` after 10,000 malformed requests (bench/figures/fuzz-burst.ts). */
export function fuzzRow(fuzz: Partial<Record<Runtime, FuzzBurst | Unavailable>>): Row {
  const cell = (f: FuzzBurst | Unavailable | undefined): Cell => {
    if (!f) return NOT_APPLICABLE;
    if (isUnavailable(f)) return unavailableCell(f);
    return {
      value: `${f.afterRestRssMiB.toFixed(1)} (right after ${f.afterBurstRssMiB.toFixed(1)}; after a 2nd burst ${f.afterSecondRestRssMiB.toFixed(1)})`,
      ratio: `${f.ratio.toFixed(2)}× idle ${f.idleRssMiB.toFixed(1)}`,
      met: f.ratio <= 1.5,
    };
  };
  const rest = Object.values(fuzz).find((f) => f && !isUnavailable(f)) as FuzzBurst | undefined;
  return {
    figure: `RSS ${rest ? rest.restMs / 1000 : 60} s after ${rest?.requests ?? 10_000} malformed requests (MiB)`,
    floor: "idle RSS",
    peer: "—",
    target: "≤ 1.5× idle",
    bun: cell(fuzz.bun),
    node: cell(fuzz.node),
  };
}
