/**
 * Preloaded by `npm test` (`node --import ./test/blocking-stdio.ts --test …`) into the runner and
 * every test file's process: makes writes to stdout and stderr synchronous when they are pipes.
 *
 * Each test file's process reports its results to the runner over its stdout, a pipe, and pipe
 * writes are asynchronous on Linux. With `--test-force-exit` (which `npm test` needs: a file that
 * leaves a handle open after a failure would otherwise hold the whole run) the process exits
 * without waiting for them, and the last results of a file are lost without a trace: a CI run
 * reported 973 tests instead of 975, its unit-test file's last two results missing, and still
 * passed (nodejs/node#64833). 40 files of 50 empty tests at `--test-concurrency=4`: 1,926, 1,928
 * and 1,947 of 2,000 reported without this; 2,000 every time with it.
 */
type WithHandle = { _handle?: { setBlocking?: (blocking: boolean) => void } };
for (const stream of [process.stdout, process.stderr] as unknown as WithHandle[]) stream._handle?.setBlocking?.(true);
