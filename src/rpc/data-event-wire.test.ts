import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { ConnectResponseSchema, StartResponseSchema } from "../gen/process/process_pb.js";
import type { OutputStream } from "../process/output-history.ts";
import { encodeDataEventField } from "./data-event-wire.ts";

type ResponseSchema = typeof StartResponseSchema | typeof ConnectResponseSchema;

/** What protobuf-es writes for the same message. */
function viaProtobufEs(schema: ResponseSchema, stream: OutputStream, offset: number, data: Uint8Array) {
  return toBinary(schema, create(schema, { event: { event: { case: "data", value: { output: { case: stream, value: data }, offset: BigInt(offset) } } } }));
}

/** Our field, written by protobuf-es as the response's unknown field 1 (as the process service does). */
function viaHand(schema: ResponseSchema, stream: OutputStream, offset: number, parts: Uint8Array[]) {
  const size = parts.reduce((a, p) => a + p.byteLength, 0);
  const msg = create(schema);
  msg.$unknown = [{ no: 1, wireType: WireType.LengthDelimited, data: encodeDataEventField(stream, offset, parts, size) }];
  return toBinary(schema, msg);
}

test("a hand-encoded data event is byte for byte what protobuf-es writes, and decodes to the same event", () => {
  // Sizes and offsets around every varint width of the three nested length prefixes and the offset.
  const sizes = [1, 2, 100, 110, 127, 128, 16_370, 16_383, 16_384, 65_536, 262_144, (1 << 20) - 64, 1 << 20, 2_097_140, 2_097_152];
  const offsets = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32 + 5, 2 ** 35, Number.MAX_SAFE_INTEGER];
  const streams: OutputStream[] = ["stdout", "stderr", "pty"];
  for (const schema of [StartResponseSchema, ConnectResponseSchema]) {
    for (const size of sizes) {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i++) data[i] = (i * 31 + size) & 0xff;
      for (const offset of offsets) {
        const stream = streams[(size + offset) % 3] as OutputStream;
        const what = `${schema.typeName} ${stream} size ${size} offset ${offset}`;
        const want = viaProtobufEs(schema, stream, offset, data);
        assert.deepEqual(viaHand(schema, stream, offset, [data]), want, what);
        // The same bytes cut in three parts (views into the log).
        const cut = [data.subarray(0, size >> 2), data.subarray(size >> 2, size >> 1), data.subarray(size >> 1)];
        assert.deepEqual(viaHand(schema, stream, offset, cut), want, `${what}, in parts`);
        const back = fromBinary(schema, want).event?.event;
        assert.equal(back?.case, "data");
        assert.equal(back.value.output.case, stream);
        assert.equal(back.value.offset, BigInt(offset));
      }
    }
  }
});

test("an empty data event is encoded as protobuf-es does", () => {
  for (const offset of [0, 300]) {
    assert.deepEqual(viaHand(StartResponseSchema, "stdout", offset, []), viaProtobufEs(StartResponseSchema, "stdout", offset, new Uint8Array(0)));
  }
});
