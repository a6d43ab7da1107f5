/**
 * Every `protocol.md §N.M` cited in the repository names a section that exists in
 * docs/protocol.md. A bare `§N` counts as a protocol citation when the file cites protocol.md
 * anywhere, unless another document (an RFC, runtime.md) is named earlier on the same line.
 */
import assert from "node:assert/strict";
import { type Dirent, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";

const ROOT = join(import.meta.dirname, "..");
const SCANNED = ["src", "test", "bench", "scripts", "docs", "deploy", "proto"];
const SKIPPED = new Set(["node_modules", "gen", ".git", "dist"]);

/** Section numbers of docs/protocol.md: `## 4. HTTP API` → "4", `### 4.3 GET /files` → "4.3". */
export function sectionsOf(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{2,4} (\d+(?:\.\d+)*)\.? /gm)) out.add(m[1] as string);
  return out;
}

export interface Citation {
  line: number;
  section: string;
}

/** The protocol sections a file's text cites (both ends of a range such as `§4.3–4.5`). */
export function citationsIn(text: string): Citation[] {
  const citesProtocol = /protocol\.md/.test(text);
  const out: Citation[] = [];
  text.split("\n").forEach((line, i) => {
    let doc: string | undefined;
    for (const m of line.matchAll(/(RFC \d+|runtime\.md|protocol\.md)|§\s?(\d+(?:\.\d+)*)(?:\s?[–-]\s?(\d+(?:\.\d+)*))?/g)) {
      if (m[1] !== undefined) {
        doc = m[1];
        continue;
      }
      if ((doc ?? (citesProtocol ? "protocol.md" : undefined)) !== "protocol.md") continue;
      for (const section of [m[2], m[3]]) if (section !== undefined) out.push({ line: i + 1, section });
    }
  });
  return out;
}

function filesUnder(dir: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    if (SKIPPED.has(e.name)) return [];
    const p = join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return /\.(ts|md|sh|json|proto)$/.test(e.name) || !e.name.includes(".") ? [p] : [];
  });
}

describe("docs/protocol.md citations", () => {
  const sections = sectionsOf(readFileSync(join(ROOT, "docs/protocol.md"), "utf8"));

  test("the checker finds citations and tells a missing section from a present one", () => {
    assert.ok(sections.has("4.3") && sections.has("7") && !sections.has("4.99"));
    const found = citationsIn("see docs/protocol.md §4.3–4.5, §9.9 and RFC 9110 §14\n§2 and §5.1.");
    assert.deepEqual(
      found.map((c) => c.section),
      ["4.3", "4.5", "9.9", "2", "5.1"],
    );
    assert.deepEqual(citationsIn("RFC 9110 §13.2.2 and §14"), []);
  });

  test("every cited section exists", () => {
    const files = [...SCANNED.flatMap((d) => filesUnder(join(ROOT, d))), join(ROOT, "README.md")];
    const missing: string[] = [];
    let count = 0;
    for (const file of files) {
      if (file.endsWith(join("docs", "protocol.md")) || file === import.meta.filename) continue;
      for (const c of citationsIn(readFileSync(file, "utf8"))) {
        count++;
        if (!sections.has(c.section)) missing.push(`${relative(ROOT, file)}:${c.line} cites §${c.section}`);
      }
    }
    assert.ok(count >= 30, `only ${count} citations found: is the scan looking in the right places?`);
    assert.deepEqual(missing, [], "sections cited but missing from docs/protocol.md");
  });
});
