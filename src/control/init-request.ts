/**
 * The body of POST /init (docs/protocol.md §6.1), parsed and validated completely before anything is
 * applied: a request that fails here changes nothing. Pure; checks that need the system (does the
 * user exist, is the workdir a directory) are made by InitService.
 *
 * JSON `null` and absent are the same. Unknown fields are ignored. Empty strings in defaultUser,
 * defaultWorkdir, hyperloopIP and caBundle mean "not given", as in E2B envd.
 */
import { isIP } from "node:net";
import { isAbsolute, normalize } from "node:path";
import { Code, EnvdError } from "../errors.ts";
import { parseRfc3339Ns } from "./clock.ts";

export interface VolumeMount {
  /** `host:/export`, passed to mount as the source. */
  nfsTarget: string;
  /** Absolute mount point, normalised. */
  path: string;
}

export interface InitRequest {
  /** The whole set of /init variables (replaces the previous set), or undefined to keep it. */
  envVars: Map<string, string> | undefined;
  /** Undefined = absent: on apply, the stored token is cleared. */
  accessToken: string | undefined;
  timestampNs: bigint | undefined;
  defaultUser: string | undefined;
  defaultWorkdir: string | undefined;
  hyperloopIP: string | undefined;
  volumeMounts: VolumeMount[] | undefined;
  lifecycleID: string | undefined;
  caBundle: string | undefined;
}

export const MAX_VOLUME_MOUNTS = 64;

function invalid(message: string): EnvdError {
  return new EnvdError(Code.InvalidArgument, message);
}

/** Parses and validates an /init body. Throws InvalidArgument with a message naming the field. */
export function parseInitBody(text: string): InitRequest {
  let raw: unknown = {};
  if (text.trim() !== "") {
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw invalid(`invalid JSON body: ${(err as Error).message}`);
    }
  }
  if (raw === null) raw = {};
  if (typeof raw !== "object" || Array.isArray(raw)) throw invalid("the body must be a JSON object");
  const body = raw as Record<string, unknown>;
  return {
    envVars: parseEnvVars(body.envVars),
    accessToken: parseToken(body.accessToken),
    timestampNs: parseTimestamp(body.timestamp),
    defaultUser: parseDefaultUser(body.defaultUser),
    defaultWorkdir: parseWorkdir(body.defaultWorkdir),
    hyperloopIP: parseHyperloop(body.hyperloopIP),
    volumeMounts: parseVolumeMounts(body.volumeMounts),
    lifecycleID: optionalString(body.lifecycleID, "lifecycleID"),
    caBundle: parseCaBundle(body.caBundle),
  };
}

function optionalString(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(`${field} must be a string`);
  if (v.includes("\0")) throw invalid(`${field} must not contain NUL bytes`);
  return v;
}

function parseEnvVars(v: unknown): Map<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "object" || Array.isArray(v)) throw invalid("envVars must be an object of strings");
  const out = new Map<string, string>();
  for (const [key, value] of Object.entries(v as Record<string, unknown>)) {
    if (typeof value !== "string") throw invalid(`envVars.${key} must be a string`);
    if (key === "" || key.includes("=") || key.includes("\0")) {
      throw invalid(`envVars: invalid variable name ${JSON.stringify(key)}`);
    }
    if (value.includes("\0")) throw invalid(`envVars.${key} must not contain NUL bytes`);
    out.set(key, value);
  }
  return out;
}

function parseToken(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid("accessToken must be a string");
  // As E2B envd: an empty token is refused (absent is how a token is cleared), and so is any
  // backslash (E2B rejects escapes in the raw JSON; control characters can only come from them).
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  if (v === "" || v.includes("\\") || /[\u0000-\u001f\u007f]/.test(v)) throw invalid("accessToken is not a valid token");
  return v;
}

function parseTimestamp(v: unknown): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid("timestamp must be an RFC 3339 string");
  const ns = parseRfc3339Ns(v);
  if (ns === undefined) throw invalid(`timestamp is not a valid RFC 3339 time: ${JSON.stringify(v.slice(0, 64))}`);
  return ns;
}

function parseDefaultUser(v: unknown): string | undefined {
  const s = optionalString(v, "defaultUser");
  if (!s) return undefined;
  if (s.includes(":") || s.includes("/") || /\s/.test(s)) throw invalid(`defaultUser is not a valid user name: '${s}'`);
  return s;
}

function parseWorkdir(v: unknown): string | undefined {
  const s = optionalString(v, "defaultWorkdir");
  if (!s) return undefined;
  if (!isAbsolute(s)) throw invalid(`defaultWorkdir must be an absolute path: '${s}'`);
  return stripTrailingSlash(normalize(s));
}

function stripTrailingSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, "") || "/" : p;
}

function parseHyperloop(v: unknown): string | undefined {
  const s = optionalString(v, "hyperloopIP");
  if (!s) return undefined;
  if (isIP(s) === 0) throw invalid(`hyperloopIP is not an IP address: '${s.slice(0, 64)}'`);
  return s;
}

function parseCaBundle(v: unknown): string | undefined {
  const s = optionalString(v, "caBundle");
  if (!s) return undefined;
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(s)) {
    throw invalid("caBundle must hold PEM certificates (-----BEGIN CERTIFICATE-----)");
  }
  return s;
}

/** `host:/export`; host is a name, an IPv4 address or a bracketed IPv6 one, never an option. */
const NFS_TARGET = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.][A-Za-z0-9_.-]*):\/[^\s]*$/;

function parseVolumeMounts(v: unknown): VolumeMount[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalid("volumeMounts must be an array");
  if (v.length > MAX_VOLUME_MOUNTS) throw invalid(`volumeMounts: at most ${MAX_VOLUME_MOUNTS} mounts`);
  const seen = new Set<string>();
  return v.map((item: unknown, i) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw invalid(`volumeMounts[${i}] must be an object with nfs_target and path`);
    }
    const m = item as Record<string, unknown>;
    const target = optionalString(m.nfs_target, `volumeMounts[${i}].nfs_target`);
    const path = optionalString(m.path, `volumeMounts[${i}].path`);
    if (!target || !NFS_TARGET.test(target)) {
      throw invalid(`volumeMounts[${i}].nfs_target must look like host:/export`);
    }
    if (!path || !isAbsolute(path)) throw invalid(`volumeMounts[${i}].path must be an absolute path`);
    const clean = stripTrailingSlash(normalize(path));
    if (clean === "/") throw invalid(`volumeMounts[${i}].path must not be /`);
    if (seen.has(clean)) throw invalid(`volumeMounts: ${clean} is given twice`);
    seen.add(clean);
    return { nfsTarget: target, path: clean };
  });
}
