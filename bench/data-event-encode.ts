/**
 * CPU per data event of the binary codecs' hot path, without sockets or pipes (so it stays readable
 * on a loaded machine): protobuf-es's `toBinary` of the StartResponse plus the Connect envelope,
 * against the hand encoder (src/rpc/data-event-wire.ts) through the same `toBinary` and envelope.
 * Best of 5, CPU time of this process.
 *
 *   bun bench/data-event-encode.ts;  node bench/data-event-encode.ts
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { StartResponseSchema } from "../src/gen/process/process_pb.js";
import { encodeDataEventField } from "../src/rpc/data-event-wire.ts";

/** connect-es's encodeEnvelope. */
function envelope(data: Uint8Array): Uint8Array {
  const b = new Uint8Array(data.length + 5);
  b.set(data, 5);
  new DataView(b.buffer).setUint32(1, data.length);
  return b;
}

const runtime = "bun" in process.versions ? "bun " : "node";
for (const size of [65536, 262144, (1 << 20) - 64]) {
  // The log's entries: 64 KiB pipe reads.
  const parts: Buffer[] = [];
  for (let o = 0; o < size; o += 65536) parts.push(Buffer.alloc(Math.min(65536, size - o), 7));
  const n = Math.max(200, Math.floor(2e8 / size));
  const viaProtobufEs = () => {
    const data = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
    const msg = create(StartResponseSchema, { event: { event: { case: "data", value: { output: { case: "stdout", value: data }, offset: 12345n } } } });
    return envelope(toBinary(StartResponseSchema, msg));
  };
  const viaHand = () => {
    const msg = create(StartResponseSchema);
    msg.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: encodeDataEventField("stdout", 12345, parts, size) }];
    return envelope(toBinary(StartResponseSchema, msg));
  };
  const best = new Map<string, number>();
  for (let r = 0; r < 5; r++) {
    for (const [name, f] of [["protobuf-es", viaProtobufEs], ["hand", viaHand]] as const) {
      for (let i = 0; i < 20; i++) f();
      const c = process.cpuUsage();
      for (let i = 0; i < n; i++) f();
      const u = process.cpuUsage(c);
      best.set(name, Math.min(best.get(name) ?? Number.POSITIVE_INFINITY, (u.user + u.system) / n));
    }
  }
  for (const [name, us] of best) {
    console.log(`${runtime} ${String(size).padStart(8)} B ${name.padEnd(12)} ${us.toFixed(1).padStart(7)} CPU µs/event  ${(size / us / 1e3).toFixed(2)} GB/s`);
  }
}
