/**
 * A node:test reporter for CI: with ENVD_REQUIRE_ALL=1, every skipped test is a failure (the run
 * exits 1 and each skip is listed with its reason), so a missing tool or capability on the CI
 * machine cannot pass as green. Without the variable it reports nothing.
 *
 *   node --test --test-reporter=spec --test-reporter-destination=stdout \
 *     --test-reporter=./test/require-all-reporter.ts --test-reporter-destination=stderr …
 */
interface TestEvent {
  type: string;
  data: { name?: string; file?: string; skip?: boolean | string; nesting?: number };
}

export default async function* requireAll(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const required = process.env.ENVD_REQUIRE_ALL === "1";
  const skipped: string[] = [];
  for await (const event of source) {
    const isSkip = event.type === "test:pass" && event.data.skip !== undefined && event.data.skip !== false;
    if (!required || !isSkip) continue;
    const reason = typeof event.data.skip === "string" ? event.data.skip : "skipped";
    skipped.push(`${event.data.file ?? "?"}: ${event.data.name ?? "?"} (${reason})`);
  }
  if (skipped.length === 0) return;
  process.exitCode = 1;
  yield `ENVD_REQUIRE_ALL=1: ${skipped.length} skipped test(s) count as failures:\n${skipped.map((s) => `  ${s}\n`).join("")}`;
}
