/**
 * Where a worker thread's module is, from source and in the compiled binary alike.
 *
 * From source, `new URL("./x-worker.ts", import.meta.url)` names the file. In a `bun build
 * --compile` binary all of src/ is one bundle whose import.meta.url is the binary itself, so that
 * URL names nothing; each worker is bundled as an entry point of its own (scripts/build.sh lists
 * them) at `/$bunfs/root/<path relative to src/>`. Callers pass both spellings.
 */

/** True inside a compiled binary (Bun's embedded file system). */
export function isCompiledBinary(moduleUrl: string): boolean {
  return moduleUrl.startsWith("file:///$bunfs/") || moduleUrl.startsWith("/$bunfs/");
}

/**
 * The module to hand `new Worker()`: `fromSrc` is the worker's path relative to src/ (as listed in
 * scripts/build.sh), `beside` the same file relative to the caller's module URL.
 */
export function workerModule(fromSrc: string, beside: URL, moduleUrl: string): string | URL {
  return isCompiledBinary(moduleUrl) ? `/$bunfs/root/${fromSrc}` : beside;
}
