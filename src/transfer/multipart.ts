/**
 * A multipart/form-data body as a sequence of parts, one at a time, over busboy.
 *
 * Parts are yielded in order; a file part's stream must be consumed (or `resume()`d) before the
 * parser moves on, so memory stays bounded however large the parts are. File names are kept
 * verbatim (the e2b SDK puts the full target path there) and decoded as UTF-8.
 *
 * A field part (no filename, not octet-stream) arrives whole, at most FIELD_MAX_BYTES; its bytes
 * are exact when the part declares no charset (decoded as latin1, re-encoded here).
 *
 * Any parse error (no boundary, malformed headers, truncated body) is thrown from the iterator
 * and destroys the current file stream, as InvalidArgument (400).
 */
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import busboy from "busboy";
import { Code, EnvdError } from "../errors.ts";

export const FIELD_MAX_BYTES = 1 << 20;

export type Part =
  | { kind: "file"; name: string; filename: string | undefined; stream: Readable }
  | { kind: "field"; name: string; value: Buffer; truncated: boolean };

export interface MultipartOptions {
  headers: Record<string, string | string[] | undefined>;
  signal: AbortSignal;
}

/**
 * Parses `source`. The returned iterable must be iterated to the end or `return()`ed; either way
 * the parser is torn down and `source` is unpiped (not destroyed: the caller still owns it).
 */
export function multipartParts(source: Readable, options: MultipartOptions): AsyncIterable<Part> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: options.headers as IncomingHttpHeaders,
      preservePath: true,
      defParamCharset: "utf8",
      defCharset: "latin1",
      limits: { fieldSize: FIELD_MAX_BYTES, headerPairs: 100 },
    });
  } catch (err) {
    throw new EnvdError(Code.InvalidArgument, `error parsing multipart form: ${(err as Error).message}`, { cause: err });
  }

  const queue: Part[] = [];
  let failure: EnvdError | undefined;
  let finished = false;
  let wake: (() => void) | undefined;
  let current: Readable | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const fail = (err: unknown) => {
    if (failure || finished) return;
    failure =
      err instanceof EnvdError
        ? err
        : new EnvdError(Code.InvalidArgument, `error reading multipart form: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    current?.destroy(failure);
    notify();
  };

  parser.on("file", (name, stream, info) => {
    // A queued part nobody reads yet still gets destroyed with the parser's error; that error
    // reaches the caller through the iterator (and a reader through its own iteration), so it
    // must not also surface as an unhandled 'error' event, which would crash the daemon.
    stream.on("error", () => {});
    current = stream;
    stream.once("end", () => {
      if (current === stream) current = undefined;
    });
    queue.push({ kind: "file", name, filename: info.filename, stream });
    notify();
  });
  parser.on("field", (name, value, info) => {
    queue.push({ kind: "field", name, value: Buffer.from(value, "latin1"), truncated: info.valueTruncated });
    notify();
  });
  parser.on("error", fail);
  parser.on("close", () => {
    finished = true;
    notify();
  });
  const onSourceError = (err: Error) => fail(err);
  source.on("error", onSourceError);
  const onAbort = () => fail(options.signal.reason);
  options.signal.addEventListener("abort", onAbort, { once: true });
  source.pipe(parser);

  const teardown = () => {
    options.signal.removeEventListener("abort", onAbort);
    source.off("error", onSourceError);
    source.unpipe(parser);
    if (!finished) parser.destroy();
    current?.destroy();
  };

  return {
    [Symbol.asyncIterator](): AsyncIterator<Part> {
      return {
        async next(): Promise<IteratorResult<Part>> {
          for (;;) {
            if (failure) {
              teardown();
              throw failure;
            }
            const part = queue.shift();
            if (part) return { value: part, done: false };
            if (finished) {
              teardown();
              return { value: undefined, done: true };
            }
            await new Promise<void>((r) => {
              wake = r;
            });
          }
        },
        async return(): Promise<IteratorResult<Part>> {
          teardown();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
