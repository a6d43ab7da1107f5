import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, EnvdError } from "../errors.ts";
import { joinHostPort, tunnelTarget } from "./tunnel.ts";

const target = (q: string) => tunnelTarget(new URL(`http://envd/tunnel${q}`));

describe("tunnel target", () => {
  it("host defaults to localhost (also when empty); port is an integer 1..65535", () => {
    assert.deepEqual(target("?port=8080"), { host: "localhost", port: 8080 });
    assert.deepEqual(target("?host=&port=1"), { host: "localhost", port: 1 });
    assert.deepEqual(target("?host=10.0.0.2&port=65535"), { host: "10.0.0.2", port: 65535 });
  });

  it("refuses ports outside the range with E2B's message, and what is not an integer", () => {
    const bad: [string, string | RegExp][] = [
      ["?port=0", "port must be between 1 and 65535, got 0"],
      ["?port=65536", "port must be between 1 and 65535, got 65536"],
      ["?port=-5", "port must be between 1 and 65535, got -5"],
      ["?port=1.5", /invalid format for parameter port/],
      ["?port=x", /invalid format for parameter port/],
      ["", /port is required/],
    ];
    for (const [q, message] of bad) {
      assert.throws(
        () => target(q),
        (err: unknown) => err instanceof EnvdError && err.code === Code.InvalidArgument && (typeof message === "string" ? err.rawMessage === message : message.test(err.rawMessage)),
        q,
      );
    }
  });

  it("joins host and port as Go does (IPv6 in brackets)", () => {
    assert.equal(joinHostPort({ host: "localhost", port: 80 }), "localhost:80");
    assert.equal(joinHostPort({ host: "::1", port: 80 }), "[::1]:80");
  });
});
