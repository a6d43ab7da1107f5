/**
 * Ports service (proto/envd/ports.proto, our own: not in E2B envd or envd-rs): WatchPorts streams
 * listening TCP ports opening and closing; WaitForPort answers once a port listens. Both read
 * ports/port-scanner.ts, which scans only while one of them runs.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { Code, EnvdError } from "../errors.ts";
import type { Listener as PortListener, PortChange, PortScanner } from "../ports/port-scanner.ts";
import type { ListenerSchema, Ports, WatchPortsResponseSchema } from "../gen/envd/ports_pb.js";
import { keepaliveMsOf, waitReady } from "./stream-pump.ts";

type ListenerInit = MessageInitShape<typeof ListenerSchema>;
type WatchInit = MessageInitShape<typeof WatchPortsResponseSchema>;

/** Longest WaitForPort timeout accepted. */
const WAIT_MAX_MS = 24 * 3600 * 1000;
/** Most ports one WatchPorts may name. */
const WATCH_MAX_PORTS = 1024;

export interface PortsServiceDeps {
  scanner: PortScanner;
}

export function createPortsService(deps: PortsServiceDeps): ServiceImpl<typeof Ports> {
  const { scanner } = deps;

  return {
    async *watchPorts(req, ctx) {
      if (req.ports.length > WATCH_MAX_PORTS) throw new EnvdError(Code.InvalidArgument, `at most ${WATCH_MAX_PORTS} ports may be named, got ${req.ports.length}`);
      for (const p of req.ports) checkPort(p);
      const only = req.ports.length > 0 ? new Set(req.ports) : undefined;
      const wanted = (l: PortListener) => only === undefined || only.has(l.port);
      const keepaliveMs = keepaliveMsOf(ctx.requestHeader);

      const queue: WatchInit[] = [];
      let wake: (() => void) | undefined;
      const ready = () => (queue.length > 0 ? Promise.resolve() : new Promise<void>((r) => (wake = r)));
      const push = (change: PortChange) => {
        for (const l of change.closed) if (wanted(l)) queue.push({ event: { case: "closed", value: { listener: listenerMessage(l) } } });
        for (const l of change.opened) if (wanted(l)) queue.push({ event: { case: "opened", value: { listener: listenerMessage(l) } } });
        const w = wake;
        wake = undefined;
        w?.();
      };
      using _subscription = scanner.subscribe(push);
      yield { event: { case: "start", value: {} } };
      // A listing as of now: the scanner's last one may predate a listener opened just before this call.
      await waitReady(scanner.fresh(), WAIT_MAX_MS, ctx.signal);
      // What was queued until now is in this listing already; later changes come after it
      // (subscribers are called after the listing is updated, and nothing runs between these lines).
      const existing = scanner.current() ?? [];
      queue.length = 0;
      for (const l of existing) {
        if (wanted(l)) yield { event: { case: "opened", value: { listener: listenerMessage(l), existing: true } } };
      }
      for (;;) {
        while (queue.length > 0) yield queue.shift() as WatchInit;
        if ((await waitReady(ready(), keepaliveMs, ctx.signal)) === "timeout") yield { event: { case: "keepalive", value: {} } };
      }
    },

    async waitForPort(req, ctx) {
      checkPort(req.port);
      if (req.timeoutMs > WAIT_MAX_MS) throw new EnvdError(Code.InvalidArgument, `timeout_ms must be at most ${WAIT_MAX_MS} (24 h), got ${req.timeoutMs}`);
      const matches = () =>
        (scanner.current() ?? []).filter((l) => l.port === req.port && (req.address === "" || sameAddress(l.address, req.address)));
      let wake: (() => void) | undefined;
      using _subscription = scanner.subscribe(() => {
        const w = wake;
        wake = undefined;
        w?.();
      });
      const timeoutMs = req.timeoutMs === 0 ? WAIT_MAX_MS : req.timeoutMs;
      const deadline = Date.now() + timeoutMs;
      await waitReady(scanner.scanned(), timeoutMs, ctx.signal);
      for (;;) {
        const found = matches();
        if (found.length > 0) return { listeners: found.map(listenerMessage) };
        const left = deadline - Date.now();
        if (left <= 0 || (await waitReady(new Promise<void>((r) => (wake = r)), left, ctx.signal)) === "timeout") {
          if (matches().length > 0) continue;
          const where = req.address === "" ? "" : ` on ${req.address}`;
          throw new EnvdError(Code.DeadlineExceeded, `nothing listened on port ${req.port}${where} within ${timeoutMs} ms`);
        }
      }
    },
  };
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new EnvdError(Code.InvalidArgument, `port must be 1..65535, got ${port}`);
}

/** "127.0.0.1" also matches the IPv4-mapped "::ffff:127.0.0.1" of a dual-stack socket. */
function sameAddress(actual: string, wanted: string): boolean {
  const norm = (a: string) => (a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a.toLowerCase());
  return norm(actual) === norm(wanted);
}

function listenerMessage(l: PortListener): ListenerInit {
  return { address: l.address, port: l.port, family: l.family, pid: l.pid, cmd: l.cmd, uid: l.uid };
}
