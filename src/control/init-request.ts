/**
 * The body of POST /init (docs/protocol.md §6.1), parsed and validated completely before anything is
 * applied: a request that fails here changes nothing. Pure; checks that need the system (does the
 * user exist, is the workdir a directory) are made by InitService.
 *
 * JSON `null` and absent are the same. Unknown fields are ignored. Empty strings in defaultUser,
 * defaultWorkdir, hyperloopIP and caBundle mean "not given", as in E2B envd.
 *
 * Two spellings (docs/compatibility.md, "The Wrenn host, today"): E2B's camelCase, and the snake_case
 * of today's Wrenn host and envd-rs — `access_token`, `hyperloop_ip`, `volume_mounts`,
 * `lifecycle_id`, plus Wrenn's own `sandbox_id`, `template_id`, `proxy_domain`. Either name is
 * accepted; both given with different values is a 400. `timestamp` is RFC 3339 (nanoseconds
 * allowed), or seconds since the epoch as a JSON number or a decimal string (envd-rs's fallback).
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
  /** Wrenn: the sandbox's identity, for `WRENN_SANDBOX_ID` etc. and the run files. */
  sandboxId: string | undefined;
  templateId: string | undefined;
  proxyDomain: string | undefined;
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
  const f = (camel: string, snake: string) => either(body, camel, snake);
  const token = f("accessToken", "access_token");
  const hyperloop = f("hyperloopIP", "hyperloop_ip");
  const mounts = f("volumeMounts", "volume_mounts");
  const lifecycle = f("lifecycleID", "lifecycle_id");
  const sandbox = f("sandboxID", "sandbox_id");
  const template = f("templateID", "template_id");
  const domain = f("proxyDomain", "proxy_domain");
  return {
    envVars: parseEnvVars(body.envVars),
    accessToken: parseToken(token.value, token.name),
    timestampNs: parseTimestamp(body.timestamp),
    defaultUser: parseDefaultUser(body.defaultUser),
    defaultWorkdir: parseWorkdir(body.defaultWorkdir),
    hyperloopIP: parseHyperloop(hyperloop.value, hyperloop.name),
    volumeMounts: parseVolumeMounts(mounts.value, mounts.name),
    lifecycleID: optionalString(lifecycle.value, lifecycle.name) || undefined,
    caBundle: parseCaBundle(body.caBundle),
    sandboxId: parseIdentity(sandbox.value, sandbox.name),
    templateId: parseIdentity(template.value, template.name),
    proxyDomain: parseDomain(domain.value, domain.name),
  };
}

/** The value under either spelling, and the name it came under; both given and different is an error. */
function either(body: Record<string, unknown>, camel: string, snake: string): { value: unknown; name: string } {
  const a = body[camel] ?? undefined;
  const b = body[snake] ?? undefined;
  if (a !== undefined && b !== undefined && JSON.stringify(a) !== JSON.stringify(b)) {
    throw invalid(`${camel} and ${snake} are both given, with different values`);
  }
  return a !== undefined ? { value: a, name: camel } : { value: b, name: b !== undefined ? snake : camel };
}

/** An id that goes into an environment variable, a file and a URL: no whitespace, `/` or control characters. */
function parseIdentity(v: unknown, field: string): string | undefined {
  const s = optionalString(v, field);
  if (!s) return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  if (s.length > 256 || /[\s/\u0000-\u001f\u007f]/.test(s)) throw invalid(`${field} is not a valid id: ${JSON.stringify(s.slice(0, 64))}`);
  return s;
}

function parseDomain(v: unknown, field: string): string | undefined {
  const s = optionalString(v, field);
  if (!s) return undefined;
  if (s.length > 253 || !/^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?$/.test(s)) {
    throw invalid(`${field} is not a host name: ${JSON.stringify(s.slice(0, 64))}`);
  }
  return s;
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

function parseToken(v: unknown, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(`${field} must be a string`);
  // As E2B envd: an empty token is refused (absent is how a token is cleared), and so is any
  // backslash (E2B rejects escapes in the raw JSON; control characters can only come from them).
  // biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
  if (v === "" || v.includes("\\") || /[\u0000-\u001f\u007f]/.test(v)) throw invalid(`${field} is not a valid token`);
  return v;
}

function parseTimestamp(v: unknown): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number") {
    if (!Number.isFinite(v) || v < 0) throw invalid(`timestamp is not a valid time: ${v}`);
    return secondsToNs(String(v));
  }
  if (typeof v !== "string") throw invalid("timestamp must be an RFC 3339 string or seconds since the epoch");
  const ns = parseRfc3339Ns(v) ?? (/^\d{1,12}(?:\.\d{1,9})?$/.test(v) ? secondsToNs(v) : undefined);
  if (ns === undefined) throw invalid(`timestamp is not a valid RFC 3339 time: ${JSON.stringify(v.slice(0, 64))}`);
  return ns;
}

/** "1714564800.25" → ns, exactly (no float rounding past what the text says). */
function secondsToNs(text: string): bigint {
  // A number's own text may be in exponent form (1e9): normalise through toFixed first.
  const plain = /e/i.test(text) ? Number(text).toFixed(9) : text;
  const [whole = "0", frac = ""] = plain.split(".");
  return BigInt(whole) * 1_000_000_000n + BigInt(frac.slice(0, 9).padEnd(9, "0"));
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

function parseHyperloop(v: unknown, field: string): string | undefined {
  const s = optionalString(v, field);
  if (!s) return undefined;
  if (isIP(s) === 0) throw invalid(`${field} is not an IP address: '${s.slice(0, 64)}'`);
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

function parseVolumeMounts(v: unknown, field: string): VolumeMount[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw invalid(`${field} must be an array`);
  if (v.length > MAX_VOLUME_MOUNTS) throw invalid(`${field}: at most ${MAX_VOLUME_MOUNTS} mounts`);
  const seen = new Set<string>();
  return v.map((item: unknown, i) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      throw invalid(`${field}[${i}] must be an object with nfs_target and path`);
    }
    const m = item as Record<string, unknown>;
    const target = optionalString(m.nfs_target, `${field}[${i}].nfs_target`);
    const path = optionalString(m.path, `${field}[${i}].path`);
    if (!target || !NFS_TARGET.test(target)) {
      throw invalid(`${field}[${i}].nfs_target must look like host:/export`);
    }
    if (!path || !isAbsolute(path)) throw invalid(`${field}[${i}].path must be an absolute path`);
    const clean = stripTrailingSlash(normalize(path));
    if (clean === "/") throw invalid(`${field}[${i}].path must not be /`);
    if (seen.has(clean)) throw invalid(`${field}: ${clean} is given twice`);
    seen.add(clean);
    return { nfsTarget: target, path: clean };
  });
}
