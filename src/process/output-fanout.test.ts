import assert from "node:assert/strict";
import { test } from "node:test";
import { OutputFanout } from "./output-fanout.ts";

const limits = { historyBytes: 10, highWaterBytes: 20, lowWaterBytes: 5, hardCapBytes: 50, stallMs: 30 };

function flow() {
  const calls: string[] = [];
  return { calls, control: { pause: () => calls.push("pause"), resume: () => calls.push("resume") } };
}

function drain(sub: { take(): unknown }) {
  const items: unknown[] = [];
  for (let it = sub.take(); it; it = sub.take()) items.push(it);
  return items;
}

test("history keeps the most recent bytes and is replayed to late subscribers, then the end", () => {
  const f = new OutputFanout<string>(limits);
  f.push("stdout", Buffer.from("aaaa"));
  f.push("stderr", Buffer.from("bbbb"));
  f.push("stdout", Buffer.from("cccc")); // 12 bytes > 10: the oldest chunk goes
  const sub = f.subscribe({ replay: true });
  const items = drain(sub) as { kind: string; chunk?: { stream: string; data: Buffer } }[];
  assert.deepEqual(items.map((i) => `${i.chunk?.stream}:${i.chunk?.data}`), ["stderr:bbbb", "stdout:cccc"]);
  f.end("done");
  assert.deepEqual(drain(sub), [{ kind: "end", end: "done" }]);
  const late = f.subscribe({ replay: true });
  assert.equal((drain(late) as unknown[]).length, 3);
  const noReplay = f.subscribe({ replay: false });
  assert.deepEqual(drain(noReplay), [{ kind: "end", end: "done" }]);
});

test("the source pauses only when every subscriber is over the high-water mark, and resumes below low water", () => {
  const f = new OutputFanout<string>(limits);
  const { calls, control } = flow();
  f.setFlowControl(control);
  f.push("stdout", Buffer.alloc(30)); // no subscriber: never paused
  assert.deepEqual(calls, []);
  const a = f.subscribe({ replay: false });
  const b = f.subscribe({ replay: false });
  f.push("stdout", Buffer.alloc(25));
  assert.deepEqual(calls, ["pause"]);
  assert.ok(f.paused);
  a.take(); // a drains to 0 → below low water
  assert.deepEqual(calls, ["pause", "resume"]);
  f.push("stdout", Buffer.alloc(10)); // b at 35 (over high), a at 10 (under): stays running
  assert.deepEqual(calls, ["pause", "resume"]);
  b[Symbol.dispose]();
  a[Symbol.dispose]();
});

test("a subscriber that falls hardCap behind while another keeps up is detached with an error", () => {
  const f = new OutputFanout<string>(limits);
  const fast = f.subscribe({ replay: false });
  const slow = f.subscribe({ replay: false });
  for (let i = 0; i < 6; i++) {
    f.push("stdout", Buffer.alloc(10));
    drain(fast);
  }
  assert.equal(f.subscriberCount, 1);
  // the slow one first gets what was queued, then the error
  let err: unknown;
  try {
    drain(slow);
  } catch (e) {
    err = e;
  }
  assert.match(String((err as Error).message), /fell more than 50 bytes behind/);
  assert.equal(f.paused, false);
});

test("a stalled sole subscriber is detached after stallMs and the source resumes", async () => {
  const f = new OutputFanout<string>(limits);
  const { calls, control } = flow();
  f.setFlowControl(control);
  const sub = f.subscribe({ replay: false });
  f.push("stdout", Buffer.alloc(25));
  assert.deepEqual(calls, ["pause"]);
  const deadline = Date.now() + 5_000;
  while (f.subscriberCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(f.subscriberCount, 0);
  assert.deepEqual(calls, ["pause", "resume"]);
  drain({ take: () => (sub.queuedBytes > 0 ? sub.take() : undefined) });
  assert.throws(() => sub.take(), /made no progress/);
});

test("ready() resolves on data, on end and on dispose, and never loses an item", async () => {
  const f = new OutputFanout<string>(limits);
  const sub = f.subscribe({ replay: false });
  const r = sub.ready();
  f.push("pty", Buffer.from("x"));
  await r;
  assert.equal((sub.take() as { kind: string }).kind, "data");
  const r2 = sub.ready();
  f.end("e");
  await r2;
  assert.deepEqual(sub.take(), { kind: "end", end: "e" });
  const other = f.subscribe({ replay: false });
  other[Symbol.dispose]();
  await other.ready();
});

test("small views into large buffers are copied so the history bound is real memory", () => {
  const f = new OutputFanout<string>({ ...limits, historyBytes: 100 });
  const big = Buffer.alloc(64 * 1024);
  const sub = f.subscribe({ replay: false });
  f.push("stdout", big.subarray(0, 3));
  const item = sub.take() as { chunk: { data: Buffer } };
  assert.equal(item.chunk.data.buffer.byteLength, 3);
});
