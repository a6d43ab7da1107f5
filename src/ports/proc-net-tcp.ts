/**
 * Pure parsing of `/proc/net/tcp` and `/proc/net/tcp6`, and the choice of which listeners to
 * forward (docs/protocol.md §7.2).
 *
 * Line format (after a header line):
 *   sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
 * Addresses are the kernel's in-memory words printed with %08X: on a little-endian machine each
 * 32-bit word reads byte-reversed ("0100007F" is 127.0.0.1); the port is printed in host order.
 */
import { isIPv4 } from "node:net";

export const TCP_LISTEN = 0x0a;

export interface TcpSocket {
  family: 4 | 6;
  /** Canonical text form: "127.0.0.1", "::1", "::ffff:127.0.0.1". */
  address: string;
  port: number;
  /** TCP state number (0x0A = LISTEN). */
  state: number;
  uid: number;
  inode: number;
}

/**
 * Parses one /proc/net/tcp{,6} file; malformed lines are skipped. With `onlyState`, lines in any
 * other state are skipped before their addresses are decoded: the forwarder scans every second in
 * every VM and wants only listeners, while most lines are connections.
 */
export function parseProcNetTcp(text: string, family: 4 | 6, onlyState?: number): TcpSocket[] {
  const out: TcpSocket[] = [];
  const lines = text.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const fields = (lines[i] as string).trim().split(/\s+/);
    if (fields.length < 10) continue;
    const state = Number.parseInt(fields[3] as string, 16);
    if (onlyState !== undefined && state !== onlyState) continue;
    const local = fields[1] as string;
    const colon = local.indexOf(":");
    if (colon < 0) continue;
    const address = family === 4 ? ipv4FromHex(local.slice(0, colon)) : ipv6FromHex(local.slice(0, colon));
    const port = Number.parseInt(local.slice(colon + 1), 16);
    const uid = Number(fields[7]);
    const inode = Number(fields[9]);
    if (address === undefined || !Number.isInteger(port) || !Number.isInteger(state)) continue;
    out.push({ family, address, port, state, uid, inode });
  }
  return out;
}

/** "0100007F" → "127.0.0.1" (little-endian word). */
export function ipv4FromHex(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return undefined;
  const bytes = wordBytes(hex);
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/** 32 hex digits, four little-endian words → canonical IPv6 text ("::1", "::ffff:127.0.0.1"). */
export function ipv6FromHex(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{32}$/.test(hex)) return undefined;
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) bytes.push(...wordBytes(hex.slice(w * 8, w * 8 + 8)));
  return formatIPv6(bytes);
}

function wordBytes(hex8: string): number[] {
  const b = [0, 1, 2, 3].map((i) => Number.parseInt(hex8.slice(i * 2, i * 2 + 2), 16));
  return b.reverse();
}

function formatIPv6(bytes: number[]): string {
  const isMapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (isMapped) return `::ffff:${bytes.slice(12).join(".")}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] as number) << 8) | (bytes[i + 1] as number));
  // Longest run of ≥ 2 zero groups becomes "::" (RFC 5952).
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLen).join(":");
  return `${head}::${tail}`;
}

/** 127.0.0.0/8, ::1 and IPv4-mapped 127.0.0.0/8. */
export function isLoopback(address: string): boolean {
  if (isIPv4(address)) return address.startsWith("127.");
  if (address === "::1") return true;
  return address.startsWith("::ffff:127.");
}

export function isWildcard(address: string): boolean {
  return address === "0.0.0.0" || address === "::";
}

/** One port to forward: the host-facing side listens on `port`, connections go to `address`:`port`. */
export interface ForwardTarget {
  port: number;
  /** The loopback address the guest program listens on. */
  address: string;
  family: 4 | 6;
}

/**
 * Ports whose listeners are bound only to loopback. A port that also has a wildcard listener is
 * reachable already. Listeners on the host-facing addresses (`ignore`: our own forwards among them)
 * do not count either way. When a port listens on both 127.0.0.1 and ::1, IPv4 is used.
 */
export function forwardTargets(sockets: readonly TcpSocket[], ignore: ReadonlySet<string> = new Set()): ForwardTarget[] {
  const byPort = new Map<number, TcpSocket[]>();
  for (const s of sockets) {
    if (s.state !== TCP_LISTEN || ignore.has(s.address) || ignore.has(unmapped(s.address))) continue;
    const list = byPort.get(s.port) ?? [];
    list.push(s);
    byPort.set(s.port, list);
  }
  const out: ForwardTarget[] = [];
  for (const [port, list] of byPort) {
    if (list.some((s) => isWildcard(s.address))) continue;
    const loop = list.filter((s) => isLoopback(s.address));
    if (loop.length === 0) continue;
    const v4 = loop.find((s) => s.family === 4 || s.address.startsWith("::ffff:"));
    const chosen = v4 ?? (loop[0] as TcpSocket);
    const address = unmapped(chosen.address);
    out.push({ port, address, family: isIPv4(address) ? 4 : 6 });
  }
  return out.sort((a, b) => a.port - b.port);
}

function unmapped(address: string): string {
  return address.startsWith("::ffff:") && isIPv4(address.slice(7)) ? address.slice(7) : address;
}
