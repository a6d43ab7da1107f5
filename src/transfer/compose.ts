/**
 * POST /files/compose (docs/protocol.md §4.5): concatenate uploaded chunks into one file.
 *
 * Sources are checked first (each must exist and be a regular file, none may be the
 * destination), then copied in order into `<destination>.e2b-compose.<uuid>.tmp` (owned by the
 * user), which is renamed onto the destination; only then are the sources deleted. Any failure
 * removes the temporary file and leaves destination and sources untouched.
 */
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import { writeFileAtomically } from "./atomic-write.ts";
import { ensureDirs, type Owner } from "../fs/make-dir.ts";

export interface ComposeSource {
  /** As given by the client (for messages). */
  given: string;
  resolved: string;
}

export interface ComposeOptions {
  owner: Owner;
  signal: AbortSignal;
}

export async function composeFiles(sources: ComposeSource[], destination: string, options: ComposeOptions): Promise<number> {
  if (sources.length === 0) throw new EnvdError(Code.InvalidArgument, "source_paths must not be empty");
  for (const s of sources) {
    if (s.resolved === destination) {
      throw new EnvdError(Code.InvalidArgument, `source path ${JSON.stringify(s.given)} cannot be the same as destination`);
    }
    let isFile: boolean;
    try {
      isFile = (await stat(s.resolved)).isFile();
    } catch (err) {
      throw new EnvdError(Code.NotFound, `source file not found: ${s.given}`, { cause: err });
    }
    if (!isFile) throw new EnvdError(Code.InvalidArgument, `source path is not a regular file: ${s.given}`);
  }
  await ensureDirs(dirname(destination), options.owner);
  const { bytes } = await writeFileAtomically(destination, concatenate(sources, options.signal), {
    owner: options.owner,
    signal: options.signal,
    tempPath: `${destination}.e2b-compose.${randomUUID()}.tmp`,
  });
  // Same source listed twice: the second removal finds nothing, which is fine.
  for (const path of new Set(sources.map((s) => s.resolved))) await rm(path, { force: true }).catch(() => {});
  return bytes;
}

async function* concatenate(sources: ComposeSource[], signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for (const s of sources) {
    const stream = createReadStream(s.resolved, { highWaterMark: 1 << 20, signal });
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } catch (err) {
      if (signal.aborted) throw err;
      throw new EnvdError(Code.Internal, `error composing source ${s.resolved}: ${(err as Error).message}`, { cause: err });
    }
  }
}
