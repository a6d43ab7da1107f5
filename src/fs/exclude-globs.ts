/**
 * Exclude globs of a watch (WatchDirRequest/CreateWatcherRequest `exclude`, field 100: our
 * addition, docs/compatibility.md "Beyond the anchors"). A path that matches is left out with
 * everything beneath it: no events, and (for a directory) no inotify watch.
 *
 * - A pattern without `/` matches a name at any depth: `node_modules`, `.git`, `*.log`.
 * - A pattern with `/` (a leading one included: `/tmp`) matches the path relative to the
 *   watched directory, from its start: `build/out`, `src/**\/gen` (`**` is any number of
 *   directories, also none).
 * - `*` is any run of characters but `/`, `?` one character, `[abc]`, `[a-z]`, `[!x]` a class;
 *   `\` escapes the next character. A leading `./` and a trailing `/` are ignored.
 *
 * Pure: shared by the service (to refuse bad patterns with invalid_argument) and the watch worker.
 */

/** Most patterns one watch takes. */
export const MAX_EXCLUDES = 256;
/** Longest pattern accepted. */
export const MAX_EXCLUDE_LENGTH = 1024;

/** True when `rel` (relative to the watched directory, `/`-separated) is excluded. */
export type ExcludeFn = (rel: string) => boolean;

export class GlobError extends Error {}

/** Compiles the patterns; throws GlobError (with a message for the client) on a bad one. */
export function compileExcludes(patterns: readonly string[]): ExcludeFn | undefined {
  if (patterns.length === 0) return undefined;
  if (patterns.length > MAX_EXCLUDES) throw new GlobError(`at most ${MAX_EXCLUDES} exclude patterns, got ${patterns.length}`);
  const names: RegExp[] = [];
  const paths: RegExp[] = [];
  for (const raw of patterns) {
    if (raw.length > MAX_EXCLUDE_LENGTH) throw new GlobError(`exclude pattern longer than ${MAX_EXCLUDE_LENGTH} characters`);
    let p = raw;
    while (p.startsWith("./")) p = p.slice(2);
    const rooted = p.startsWith("/");
    p = p.replace(/^\/+/, "").replace(/\/+$/, "");
    if (p === "" || p.includes("\0")) throw new GlobError(`invalid exclude pattern '${raw}': empty`);
    const parts = p.split("/").filter((s) => s !== "" && s !== ".");
    if (parts.length === 1 && parts[0] !== "**" && !rooted) names.push(new RegExp(`^${componentSource(parts[0] as string, raw)}$`, "s"));
    else paths.push(anchored(parts, raw));
  }
  return (rel) => {
    if (rel === "" || rel === ".") return false;
    if (names.length > 0) {
      for (const name of rel.split("/")) for (const re of names) if (re.test(name)) return true;
    }
    for (const re of paths) if (re.test(rel)) return true;
    return false;
  };
}

/** A path pattern: matches the path itself or anything beneath it. */
function anchored(parts: string[], raw: string): RegExp {
  let src = "^";
  parts.forEach((part, i) => {
    const last = i === parts.length - 1;
    if (part === "**") {
      src += last ? "[^]*" : "(?:[^/]*/)*";
      return;
    }
    src += componentSource(part, raw) + (last ? "" : "/");
  });
  return new RegExp(`${src}(?:/[^]*)?$`);
}

/** One path component's glob as regex source (never matching `/`). */
function componentSource(glob: string, raw: string): string {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === "\\") {
      const next = glob[++i];
      if (next === undefined) throw new GlobError(`invalid exclude pattern '${raw}': trailing backslash`);
      out += escapeRegex(next);
    } else if (c === "*") {
      while (glob[i + 1] === "*") i++;
      out += "[^/]*";
    } else if (c === "?") out += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end < 0) throw new GlobError(`invalid exclude pattern '${raw}': unclosed '['`);
      let body = glob.slice(i + 1, end);
      const negate = body.startsWith("!") || body.startsWith("^");
      if (negate) body = body.slice(1);
      out += `[${negate ? "^/" : ""}${body.replace(/[\\\]]/g, "\\$&")}]`;
      i = end;
    } else out += escapeRegex(c);
  }
  return out;
}

function escapeRegex(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}
