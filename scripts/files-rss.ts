/**
 * Measures the daemon's memory across a 1 GiB /files round trip: one streamed upload
 * (octet-stream, chunked), one multipart upload, an identity download and a gzip download, each
 * of 1 GiB, under Bun and Node. Prints VmRSS before, the peak while transferring (sampled every
 * 20 ms from /proc/<pid>/status) and the growth. Not a test: numbers go to docs/architecture.md.
 *
 *   node_modules/.bin/node scripts/files-rss.ts [bun|node ...]
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type Runtime, startDaemon } from "../test/e2e/harness.ts";

const GIB = Number(process.env.FILES_RSS_GIB ?? 1) * (1 << 30);
const CHUNK = randomBytes(1 << 20);

function rssKiB(pid: number, field = "VmRSS"): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

function body(bytes: number, prefix?: Buffer, suffix?: Buffer): ReadableStream<Uint8Array> {
  let sent = 0;
  let head = prefix;
  let tail = suffix;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (head) {
        c.enqueue(head);
        head = undefined;
      } else if (sent < bytes) {
        const n = Math.min(CHUNK.length, bytes - sent);
        sent += n;
        c.enqueue(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
      } else if (tail) {
        c.enqueue(tail);
        tail = undefined;
      } else c.close();
    },
  });
}

async function measure(runtime: Runtime) {
  const dir = mkdtempSync("/tmp/envd-rss-");
  await using envd = await startDaemon({ runtime });
  const target = join(dir, "big.bin");
  // Warm up: load the code paths once so the baseline includes them.
  await (await envd.fetch(`/files?path=${encodeURIComponent(join(dir, "warm"))}`, { method: "POST", body: "x", headers: { "content-type": "application/octet-stream" } })).text();
  await (await envd.fetch(`/files?path=${encodeURIComponent(join(dir, "warm"))}`)).text();
  await new Promise((r) => setTimeout(r, 500));
  const base = rssKiB(envd.pid);
  let peak = base;
  let phasePeak = base;
  const sampler = setInterval(() => {
    const now = rssKiB(envd.pid);
    peak = Math.max(peak, now);
    phasePeak = Math.max(phasePeak, now);
  }, 20);
  const results: Record<string, string> = {};
  const time = async (name: string, f: () => Promise<void>) => {
    const t0 = performance.now();
    phasePeak = rssKiB(envd.pid);
    console.error(`${runtime}: ${name}…`);
    await f();
    const s = (performance.now() - t0) / 1000;
    results[name] = `${s.toFixed(1)} s (${(GIB / s / 1e6).toFixed(0)} MB/s), peak RSS ${(phasePeak / 1024).toFixed(0)} MiB = base +${((phasePeak - base) / 1024).toFixed(0)} MiB`;
  };

  await time("upload octet-stream", async () => {
    const res = await envd.fetch(`/files?path=${encodeURIComponent(target)}`, {
      method: "POST",
      body: body(GIB),
      headers: { "content-type": "application/octet-stream" },
      duplex: "half",
    } as RequestInit);
    if (res.status !== 200) throw new Error(`upload: ${res.status} ${await res.text()}`);
    await res.text();
  });
  await time("upload multipart", async () => {
    const boundary = "----envdrss";
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${target}"\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const res = await envd.fetch("/files", {
      method: "POST",
      body: body(GIB, head, tail),
      headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
      duplex: "half",
    } as RequestInit);
    if (res.status !== 200) throw new Error(`multipart: ${res.status} ${await res.text()}`);
    await res.text();
  });
  for (const encoding of ["identity", "gzip"]) {
    await time(`download ${encoding}`, async () => {
      const res = await envd.fetch(`/files?path=${encodeURIComponent(target)}`, { headers: { "accept-encoding": encoding } });
      const hash = createHash("sha256");
      let n = 0;
      for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(c);
        n += c.length;
      }
      if (n !== GIB) throw new Error(`download ${encoding}: ${n} bytes`);
    });
  }
  clearInterval(sampler);
  const after = rssKiB(envd.pid);
  const hwm = rssKiB(envd.pid, "VmHWM");
  rmSync(dir, { recursive: true, force: true });
  console.log(
    JSON.stringify(
      {
        runtime,
        baseMiB: +(base / 1024).toFixed(1),
        peakMiB: +(peak / 1024).toFixed(1),
        growthMiB: +((peak - base) / 1024).toFixed(1),
        afterMiB: +(after / 1024).toFixed(1),
        vmHwmMiB: +(hwm / 1024).toFixed(1),
        ...results,
      },
      null,
      1,
    ),
  );
}

const runtimes = (process.argv.slice(2).length ? process.argv.slice(2) : ["bun", "node"]) as Runtime[];
for (const r of runtimes) await measure(r);
