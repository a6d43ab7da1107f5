import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { EnvdError, httpStatusOf } from "../errors.ts";
import { multipartParts, type Part } from "./multipart.ts";

const BOUNDARY = "XyZ";
const type = `multipart/form-data; boundary=${BOUNDARY}`;

function body(...parts: string[]): string {
  return `${parts.map((p) => `--${BOUNDARY}\r\n${p}\r\n`).join("")}--${BOUNDARY}--\r\n`;
}

async function collect(source: Readable, contentType = type) {
  const out: { kind: string; name: string; filename?: string | undefined; data: string }[] = [];
  for await (const part of multipartParts(source, { headers: { "content-type": contentType }, signal: new AbortController().signal })) {
    out.push(await describePart(part));
  }
  return out;
}

async function describePart(part: Part) {
  if (part.kind === "field") return { kind: "field", name: part.name, data: part.value.toString("latin1") };
  const chunks: Buffer[] = [];
  for await (const c of part.stream) chunks.push(c as Buffer);
  return { kind: "file", name: part.name, filename: part.filename, data: Buffer.concat(chunks).toString("latin1") };
}

/** A source that delivers its bytes in small pieces, to cross every boundary. */
function trickle(text: string, size = 3): Readable {
  const buf = Buffer.from(text, "utf8");
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) pieces.push(buf.subarray(i, i + size));
  return Readable.from(pieces);
}

describe("multipartParts", () => {
  test("files and fields in order; full paths and UTF-8 names kept; bytes exact", async () => {
    const text = body(
      'Content-Disposition: form-data; name="file"; filename="/home/user/a b/ü.txt"\r\n\r\nfirst',
      'Content-Disposition: form-data; name="note"\r\n\r\njust a field',
      'Content-Disposition: form-data; name="file"; filename="rel/x.bin"\r\nContent-Type: application/octet-stream\r\n\r\n\u00ff\u0000',
    );
    const parts = await collect(trickle(text));
    assert.deepEqual(parts, [
      { kind: "file", name: "file", filename: "/home/user/a b/ü.txt", data: "first" },
      { kind: "field", name: "note", data: "just a field" },
      { kind: "file", name: "file", filename: "rel/x.bin", data: Buffer.from("\u00ff\u0000", "utf8").toString("latin1") },
    ]);
  });

  test("filename* (RFC 5987) is decoded", async () => {
    const text = body(`Content-Disposition: form-data; name="file"; filename*=UTF-8''%E6%97%A5.txt\r\n\r\nx`);
    const [part] = await collect(Readable.from([Buffer.from(text)]));
    assert.equal(part?.filename, "日.txt");
  });

  test("a field's bytes survive (latin1 round trip)", async () => {
    const raw = Buffer.concat([
      Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"\r\n\r\n`),
      Buffer.from([0xc3, 0xa9, 0xff, 0x00, 0x80]),
      Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
    ]);
    for await (const part of multipartParts(Readable.from([raw]), { headers: { "content-type": type }, signal: new AbortController().signal })) {
      assert.equal(part.kind, "field");
      if (part.kind === "field") assert.deepEqual([...part.value], [0xc3, 0xa9, 0xff, 0x00, 0x80]);
    }
  });

  const isBadRequest = (err: unknown) => err instanceof EnvdError && httpStatusOf(err) === 400;

  test("no boundary → 400 at once", () => {
    assert.throws(() => multipartParts(Readable.from([]), { headers: { "content-type": "multipart/form-data" }, signal: new AbortController().signal }), isBadRequest);
  });

  test("a body cut before the closing boundary → an error, never an uncaught exception", async () => {
    let uncaught: unknown;
    const onUncaught = (err: unknown) => {
      uncaught = err;
    };
    process.on("uncaughtException", onUncaught);
    try {
      // The iterator fails before the queued file part is read: its stream has no reader yet.
      const text = body('Content-Disposition: form-data; name="file"; filename="f"\r\n\r\nsome data');
      const source = trickle(text.slice(0, -20));
      await assert.rejects(
        (async () => {
          for await (const _ of multipartParts(source, { headers: { "content-type": type }, signal: new AbortController().signal })) {
            // parts are left unread on purpose
          }
        })(),
        isBadRequest,
      );
      // Let every pending error event fire (they are emitted on next ticks and immediates).
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
      assert.equal(uncaught, undefined);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });

  test("a body cut before the closing boundary → 400 (from the part stream or the iterator)", async () => {
    const text = body('Content-Disposition: form-data; name="file"; filename="f"\r\n\r\nsome data');
    await assert.rejects(collect(trickle(text.slice(0, -20))), (err: unknown) => err instanceof Error);
    await assert.rejects(collect(Readable.from([Buffer.from("nothing multipart here")])), isBadRequest);
  });

  test("a source error ends the iteration with 400", async () => {
    const source = new Readable({ read() {} });
    const it = multipartParts(source, { headers: { "content-type": type }, signal: new AbortController().signal })[Symbol.asyncIterator]();
    const next = it.next();
    source.destroy(new Error("socket reset"));
    await assert.rejects(next, isBadRequest);
  });

  test("an abort ends the iteration", async () => {
    const source = new Readable({ read() {} });
    const controller = new AbortController();
    const it = multipartParts(source, { headers: { "content-type": type }, signal: controller.signal })[Symbol.asyncIterator]();
    const next = it.next();
    controller.abort();
    await assert.rejects(next);
  });

  test("return() early tears the parser down without destroying the source", async () => {
    const text = body('Content-Disposition: form-data; name="file"; filename="f"\r\n\r\ndata', 'Content-Disposition: form-data; name="file"; filename="g"\r\n\r\nmore');
    const source = new Readable({ read() {} });
    source.push(Buffer.from(text)); // never ended: only teardown could destroy it
    for await (const part of multipartParts(source, { headers: { "content-type": type }, signal: new AbortController().signal })) {
      if (part.kind === "file") part.stream.resume();
      break;
    }
    assert.equal(source.destroyed, false);
  });
});
