import assert from "node:assert/strict";
import { test } from "node:test";
import { loopbackPair } from "../../test/loopback-pair.ts";
import { spawnTurn } from "./spawn-turns.ts";

test("turns come in call order", async () => {
  const order: number[] = [];
  await Promise.all(Array.from({ length: 20 }, (_, i) => spawnTurn().then(() => order.push(i))));
  assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i));
});

test("socket I/O is handled between two turns", async () => {
  // A loopback pair: what one turn writes is read before the next turn begins.
  const { client, peer, close } = await loopbackPair();
  const log: string[] = [];
  peer.on("data", (d) => log.push(`read ${d.toString()}`));
  const turns = Array.from({ length: 5 }, (_, i) =>
    spawnTurn().then(() => {
      log.push(`turn ${i}`);
      // Stands in for a blocking spawn: the loop cannot run during it.
      const until = performance.now() + 5;
      while (performance.now() < until);
      client.write(String(i));
    }),
  );
  await Promise.all(turns);
  close();
  // Every write of turn i was read before turn i + 1 (reads may not merge across turns).
  for (let i = 0; i < 4; i++) assert.ok(log.indexOf(`read ${i}`) !== -1 && log.indexOf(`read ${i}`) < log.indexOf(`turn ${i + 1}`), log.join(", "));
});
