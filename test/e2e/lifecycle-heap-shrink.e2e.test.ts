/**
 * Memory given back after a burst (upkeep/heap-trimmer.ts): on Bun the trimmer also shrinks JSC's
 * heap (`Bun.shrink()`), but only while no request is in flight, because a shrink under open
 * streams once stalled them for good. This plays the case the gate must keep working: a client
 * whose stream dropped while the process kept writing, the daemon shrinking meanwhile, and the
 * client resuming to the exact output; then new streams and unary calls on the shrunk daemon.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RUNTIMES, eventually, startDaemon } from "./harness.ts";

const sh = (script: string) => ({ cmd: "/bin/sh", args: ["-c", script] });
type Pos = { stdout: bigint; stderr: bigint; pty: bigint };

/** 300 lines, one every 40 ms: still running while the daemon trims. */
const SLOW = "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); sleep 0.04; done";
const expected = Array.from({ length: 300 }, (_, i) => `line ${i}\n`).join("");

for (const runtime of RUNTIMES) {
  describe(`heap trimming with streams [${runtime}]`, () => {
    test("a stream dropped before a trim resumes to the exact output after it; new streams and calls work", async () => {
      await using envd = await startDaemon({ runtime, args: ["--log-level", "debug"] });
      const client = envd.binary.process;

      // The trimmer compares with its first sample: the burst must come after it.
      await eventually(() => envd.logs.find((l) => l.msg === "heap trimmer sampling"), "the trimmer's first sample", 10_000);
      // A burst, so RSS grows well past the trimmer's threshold.
      let burst = 0;
      for await (const res of client.start({ process: sh("head -c 200000000 /dev/zero"), stdin: false })) {
        const ev = res.event?.event;
        if (ev?.case === "data") burst += ev.value.output.value?.byteLength ?? 0;
      }
      assert.equal(burst, 200_000_000);

      // A slow process; the client reads a little, then its connection drops.
      const abort = new AbortController();
      let pid = 0;
      let got = "";
      const pos: Pos = { stdout: 0n, stderr: 0n, pty: 0n };
      for await (const res of client.start({ process: sh(SLOW), stdin: false }, { signal: abort.signal })) {
        const ev = res.event?.event;
        if (ev?.case === "start") pid = ev.value.pid;
        if (ev?.case === "data" && ev.value.output.case === "stdout") {
          got += Buffer.from(ev.value.output.value).toString();
          pos.stdout += BigInt(ev.value.output.value.byteLength);
          if (got.includes("line 3\n")) break;
        }
      }
      abort.abort();
      assert.ok(pid > 0);
      const dropped = envd.logs.length;

      // The trimmer runs once RSS has settled; on Bun a trim with nothing in flight shrinks. A trim
      // that came while the stream was still open (not shrunk) means waiting for the retry, 30 s on.
      const trimmed = await eventually(
        () => envd.logs.slice(dropped).find((l) => l.msg === "heap trimmed" && (runtime !== "bun" || l.shrunk === true)),
        `a heap trim after the drop${runtime === "bun" ? " that shrank" : ""}`,
        60_000,
      );
      assert.ok(trimmed);

      for await (const res of client.connect({ process: { selector: { case: "pid", value: pid } }, resumeFrom: pos })) {
        const ev = res.event?.event;
        if (ev?.case === "data" && ev.value.output.case === "stdout") {
          assert.equal(ev.value.offset, pos.stdout, "no gap, no duplicate");
          got += Buffer.from(ev.value.output.value).toString();
          pos.stdout += BigInt(ev.value.output.value.byteLength);
        }
      }
      assert.equal(got, expected);

      let echoed = "";
      for await (const res of envd.process.start({ process: sh("echo after the trim"), stdin: false })) {
        const ev = res.event?.event;
        if (ev?.case === "data" && ev.value.output.case === "stdout") echoed += Buffer.from(ev.value.output.value).toString();
      }
      assert.equal(echoed, "after the trim\n");
      const listed = await envd.filesystem.listDir({ path: "/", depth: 1 });
      assert.ok(listed.entries.some((e) => e.name === "tmp"));
    });

    test("an ended process packed by the trim (process/ended-process.ts) still answers Connect, a resume and input as before", async () => {
      await using envd = await startDaemon({ runtime, args: ["--log-level", "debug"] });
      const client = envd.binary.process;
      await eventually(() => envd.logs.find((l) => l.msg === "heap trimmer sampling"), "the trimmer's first sample", 10_000);

      // A short command, read to its end: its record is what the trim packs.
      const tag = { selector: { case: "tag" as const, value: "kept" } };
      const first: string[] = [];
      for await (const res of client.start({ process: sh("printf 'kept output'; printf 'oops' >&2; exit 7"), tag: "kept", stdin: false })) {
        const ev = res.event?.event;
        if (ev?.case === "data") first.push(`${ev.value.output.case}:${Buffer.from(ev.value.output.value ?? []).toString()}`);
        if (ev?.case === "end") first.push(`end:${ev.value.exitCode}:${ev.value.error}`);
      }
      assert.equal(first.at(-1), "end:7:exit status 7");

      const logged = envd.logs.length;
      let burst = 0;
      for await (const res of client.start({ process: sh("head -c 200000000 /dev/zero"), stdin: false })) {
        const ev = res.event?.event;
        if (ev?.case === "data") burst += ev.value.output.value?.byteLength ?? 0;
      }
      assert.equal(burst, 200_000_000);
      const trimmed = await eventually(
        () => envd.logs.slice(logged).find((l) => l.msg === "heap trimmed" && typeof l.packed === "number" && l.packed >= 1),
        "a heap trim that packed the ended records",
        25_000,
      );
      assert.ok(trimmed);

      const replay = async (resumeFrom?: Pos) => {
        const events: string[] = [];
        for await (const res of client.connect({ process: tag, ...(resumeFrom ? { resumeFrom } : {}) })) {
          const ev = res.event?.event;
          if (ev?.case === "data") events.push(`${ev.value.output.case}@${ev.value.offset}:${Buffer.from(ev.value.output.value ?? []).toString()}`);
          if (ev?.case === "end") events.push(`end:${ev.value.exitCode}:${ev.value.error}`);
        }
        return events;
      };
      const replayed = await replay();
      assert.deepEqual(replayed.filter((e) => e.startsWith("stdout")), ["stdout@0:kept output"]);
      assert.deepEqual(replayed.filter((e) => e.startsWith("stderr")), ["stderr@0:oops"]);
      assert.equal(replayed.at(-1), "end:7:exit status 7");
      assert.deepEqual(await replay({ stdout: 5n, stderr: 4n, pty: 0n }), ["stdout@5:output", "end:7:exit status 7"]);
      const beyond = await replay({ stdout: 12n, stderr: 0n, pty: 0n }).then(
        () => undefined,
        (e: unknown) => e as { code?: number; rawMessage?: string },
      );
      assert.equal(beyond?.rawMessage, "cannot resume stdout at byte 12: the process has produced 11 bytes of stdout");
      const input = await client.sendInput({ process: tag, input: { input: { case: "stdin", value: Buffer.from("x") } } }).then(
        () => undefined,
        (e: unknown) => e as { rawMessage?: string },
      );
      assert.equal(input?.rawMessage, "process has already exited");
    });
  });
}
