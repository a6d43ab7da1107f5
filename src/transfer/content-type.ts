/**
 * The Content-Type of a download, from the file's extension: what mime-types' `contentType`
 * answers (the table is generated from it, scripts/gen-content-types.ts), and
 * application/octet-stream for an extension it does not know or a name without one.
 */
import { extname } from "node:path";
import { CONTENT_TYPES } from "./content-types.generated.ts";

export const DEFAULT_CONTENT_TYPE = "application/octet-stream";

/** Extension (lower case, no dot) → Content-Type; built on the first download. */
let byExtension: Map<string, string> | undefined;

function table(): Map<string, string> {
  if (byExtension) return byExtension;
  byExtension = new Map();
  for (const line of CONTENT_TYPES.split("\n")) {
    const tab = line.indexOf("\t");
    const type = line.slice(0, tab);
    for (const ext of line.slice(tab + 1).split(" ")) byExtension.set(ext, type);
  }
  return byExtension;
}

/** `path`'s Content-Type by its extension ("report.PDF" → "application/pdf"). */
export function contentTypeOf(path: string): string {
  const ext = extname(path).slice(1).toLowerCase();
  return (ext && table().get(ext)) || DEFAULT_CONTENT_TYPE;
}
