import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, EnvdError } from "../errors.ts";
import { endMessage, errorMessage, outputFrame, parseControl, startMessage } from "./exec-protocol.ts";

describe("exec framing", () => {
  it("output frames carry one tag byte: 1 stdout, 2 stderr, 3 pty", () => {
    assert.deepEqual([...outputFrame("stdout", Buffer.from("ab"))], [1, 97, 98]);
    assert.deepEqual([...outputFrame("stderr", new Uint8Array(0))], [2]);
    assert.deepEqual([...outputFrame("pty", Buffer.from([0]))], [3, 0]);
  });

  it("parses the three controls", () => {
    assert.deepEqual(parseControl('{"type":"eof"}'), { type: "eof" });
    assert.deepEqual(parseControl('{"type":"resize","cols":80,"rows":24}'), { type: "resize", cols: 80, rows: 24 });
    assert.deepEqual(parseControl('{"type":"signal","signal":"SIGINT"}'), { type: "signal", signal: "SIGINT" });
    assert.deepEqual(parseControl('{"type":"signal","signal":"term"}'), { type: "signal", signal: "SIGTERM" });
  });

  it("refuses bad controls with invalid_argument and a message saying what is wrong", () => {
    const bad: [string, RegExp][] = [
      ["nope", /JSON control/],
      ["[]", /unknown control type/],
      ['{"type":"stop"}', /unknown control type "stop"/],
      ['{"type":"resize","cols":0,"rows":24}', /invalid PTY size 0x24/],
      ['{"type":"resize","cols":80.5,"rows":24}', /invalid PTY size/],
      ['{"type":"signal","signal":"SIGSEGV"}', /unsupported signal "SIGSEGV"/],
      ['{"type":"signal"}', /unsupported signal/],
    ];
    for (const [text, message] of bad) {
      assert.throws(() => parseControl(text), (err: unknown) => err instanceof EnvdError && err.code === Code.InvalidArgument && message.test(err.rawMessage), text);
    }
  });

  it("start, end and error messages", () => {
    assert.equal(startMessage(42), '{"type":"start","pid":42}');
    assert.equal(endMessage({ exitCode: 0, exited: true, status: "exit status 0", error: undefined }), '{"type":"end","exitCode":0,"exited":true,"status":"exit status 0"}');
    assert.deepEqual(JSON.parse(endMessage({ exitCode: -1, exited: false, status: "signal: killed", error: "signal: killed" })), {
      type: "end",
      exitCode: -1,
      exited: false,
      status: "signal: killed",
      error: "signal: killed",
    });
    assert.deepEqual(JSON.parse(errorMessage(new EnvdError(Code.InvalidArgument, "bad"))), { type: "error", code: "invalid_argument", message: "bad" });
    assert.deepEqual(JSON.parse(errorMessage(new EnvdError(Code.ResourceExhausted, "full"))), { type: "error", code: "resource_exhausted", message: "full" });
    assert.deepEqual(JSON.parse(errorMessage(new Error("secret detail"))), { type: "error", code: "internal", message: "internal error" });
  });
});
