import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { createLogger } from "./log.ts";
import { RPC_SERVICES } from "./rpc/services.ts";
import { type Access, RPC_AUTH, REST_AUTH } from "./http/auth-table.ts";
import { Router } from "./http/router.ts";
import { addRoutes, type RouteDeps } from "./http/routes.ts";

const FLAVORS = ["e2b", "wrenn"] as const;

/** The daemon's own route table, built as daemon.ts builds it (handlers are never called here). */
function routeTable(flavor: (typeof FLAVORS)[number]): string[] {
  const stub = new Proxy({}, { get: () => () => undefined }) as never;
  const deps = new Proxy({ flavor, log: createLogger("error", () => {}) } as Partial<RouteDeps>, {
    get: (target, key) => (key in target ? target[key as keyof RouteDeps] : stub),
  }) as RouteDeps;
  return addRoutes(new Router(createLogger("error", () => {})), deps)
    .routes()
    .map(([m, p]) => `${m} ${p}`);
}

for (const flavor of FLAVORS) {
  test(`every REST route of the ${flavor} flavor has a row in the auth table, and every row is a route`, () => {
    const routes = routeTable(flavor);
    const rows = REST_AUTH.filter((r) => r[flavor] !== "absent").map((r) => `${r.method} ${r.path}`);
    assert.deepEqual(
      routes.filter((r) => !rows.includes(r)),
      [],
      "routes without a row in src/http/auth-table.ts (add one, and its line in docs/auth.md)",
    );
    assert.deepEqual(rows.filter((r) => !routes.includes(r)), [], "rows for routes the router does not have");
  });
}

test("every RPC service the daemon mounts has a row, every method behind the token", () => {
  assert.deepEqual(RPC_SERVICES.map((s) => s.typeName).sort(), RPC_AUTH.map((r) => r.service).sort());
  for (const r of RPC_AUTH) for (const f of FLAVORS) assert.equal(r[f], "token", `${r.service} (${f})`);
});

test("each RPC service's descriptor, loaded on first use, is the service its entry names", async () => {
  for (const s of RPC_SERVICES) {
    const desc = await s.descriptor();
    assert.equal(desc.typeName, s.typeName);
    assert.ok(desc.methods.length > 0, s.typeName);
  }
});

test("docs/auth.md shows the table as the code has it", () => {
  const doc = readFileSync(new URL("../docs/auth.md", import.meta.url), "utf8");
  const cells = new Map<string, string[]>();
  for (const line of doc.split("\n")) {
    const m = /^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \|/.exec(line);
    if (m) cells.set((m[1] as string).trim(), [(m[2] as string).trim(), (m[3] as string).trim()]);
  }
  const label = (a: Access) => ({ token: "token", open: "open", "own-check": "own check", absent: "absent" })[a];
  for (const r of REST_AUTH) assert.deepEqual(cells.get(`${r.method} ${r.path}`), [label(r.e2b), label(r.wrenn)], `${r.method} ${r.path}`);
  for (const r of RPC_AUTH) assert.deepEqual(cells.get(`/${r.service}/*`), [label(r.e2b), label(r.wrenn)], r.service);
  assert.equal(cells.size, REST_AUTH.length + RPC_AUTH.length, "docs/auth.md has rows the code does not");
});
