/**
 * One process start per event-loop turn. Spawning is synchronous in both runtimes (the call
 * returns once the child has exec'd, 1–20 ms under load), so 200 Start requests that arrive
 * together used to be spawned back to back in one turn: /health, output of the processes already
 * running and their exits all waited until the last one was spawned (up to 2 s on Bun, more on
 * Node; docs/benchmarks.md, start storm). Each start now waits for its turn, and turns are a
 * macrotask apart (setImmediate), so the loop reads sockets and pipes between two spawns. The
 * total time of a storm stays the same; one start alone waits a few microseconds.
 */

let tail: Promise<void> = Promise.resolve();

/** Resolves when the caller may spawn; the next caller's turn comes one macrotask later. */
export function spawnTurn(): Promise<void> {
  const turn = tail.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
  tail = turn;
  return turn;
}
