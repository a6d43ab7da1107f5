/**
 * The RPC services the daemon mounts, in one list: the server routes their paths to the Connect
 * adapter, protocol-errors.ts knows their methods, and the auth table (http/auth-table.ts) must
 * have a row for each (its tests enumerate this list).
 *
 * Each service is loaded on its first request (lazy-services.ts): only its name is known at start;
 * its descriptor, connect-node, and its implementation are imported when it is first called, so a
 * daemon that never lists a directory never decodes the Filesystem descriptors. Only type imports
 * at the top of this file.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Logger } from "../log.ts";
import type { FilesystemServiceDeps } from "./filesystem-service.ts";
import { type LazyRpc, lazyServices, type NodeHandler } from "./lazy-services.ts";
import type { PortsServiceDeps } from "./ports-service.ts";
import type { ProcessServiceDeps } from "./process-service.ts";

export interface RpcDeps {
  log: Logger;
  shutdownSignal: AbortSignal;
  process: ProcessServiceDeps;
  filesystem: FilesystemServiceDeps;
  ports: PortsServiceDeps;
}

export interface RpcService {
  /** `<package>.<Service>`, as the descriptor names it (src/auth-table.test.ts checks they agree). */
  typeName: string;
  /** Imports the generated module and returns the service's descriptor. */
  descriptor(): Promise<DescService>;
  /** Imports the implementation and returns what registers it on a Connect router. */
  routes(deps: RpcDeps): Promise<(router: ConnectRouter) => void>;
}

export const RPC_SERVICES: readonly RpcService[] = [
  {
    typeName: "process.Process",
    descriptor: async () => (await import("../gen/process/process_pb.js")).Process,
    routes: async (deps) => {
      const [{ Process }, { createProcessService }] = await Promise.all([import("../gen/process/process_pb.js"), import("./process-service.ts")]);
      return (router) => router.service(Process, createProcessService(deps.process));
    },
  },
  {
    typeName: "filesystem.Filesystem",
    descriptor: async () => (await import("../gen/filesystem/filesystem_pb.js")).Filesystem,
    routes: async (deps) => {
      const [{ Filesystem }, { createFilesystemService }] = await Promise.all([
        import("../gen/filesystem/filesystem_pb.js"),
        import("./filesystem-service.ts"),
      ]);
      return (router) => router.service(Filesystem, createFilesystemService(deps.filesystem));
    },
  },
  {
    typeName: "envd.Ports",
    descriptor: async () => (await import("../gen/envd/ports_pb.js")).Ports,
    routes: async (deps) => {
      const [{ Ports }, { createPortsService }] = await Promise.all([import("../gen/envd/ports_pb.js"), import("./ports-service.ts")]);
      return (router) => router.service(Ports, createPortsService(deps.ports));
    },
  },
];

/** `/<package>.<Service>/` of each service: the paths the server hands to the adapter. */
export const RPC_PREFIXES: readonly string[] = RPC_SERVICES.map((s) => `/${s.typeName}/`);

/** Largest RPC request message accepted (an upload goes through /files, not RPC). */
const RPC_READ_MAX_BYTES = 64 << 20;

/**
 * The handler for every RPC path: each service gets a connect-node adapter of its own (with the
 * options all share), behind protocol-errors.ts for its methods, built on its first request.
 */
export function rpcServices(deps: RpcDeps): LazyRpc {
  const rpcLog = deps.log.child({ component: "rpc" });
  const load = async (service: RpcService): Promise<NodeHandler> => {
    const [{ compressionGzip, connectNodeAdapter }, { errorInterceptor, rpcErrorGate }, { withProtocolErrors }, desc, routes] =
      await Promise.all([
        import("@connectrpc/connect-node"),
        import("./error-interceptor.ts"),
        import("./protocol-errors.ts"),
        service.descriptor(),
        service.routes(deps),
      ]);
    const adapter = connectNodeAdapter({
      routes,
      // Accept gzip requests; never compress responses (legal, and compressing output streams costs
      // more CPU than it saves on loopback and virtio links: docs/compatibility.md, "Response compression").
      acceptCompression: [compressionGzip],
      compressMinBytes: Number.MAX_SAFE_INTEGER,
      readMaxBytes: RPC_READ_MAX_BYTES,
      jsonOptions: { ignoreUnknownFields: true },
      shutdownSignal: deps.shutdownSignal,
      interceptors: [errorInterceptor()],
      requestGate: rpcErrorGate(rpcLog),
    });
    // Unknown methods, wrong HTTP methods and content types get a body that says so.
    return withProtocolErrors(adapter, [desc]);
  };
  return lazyServices(
    RPC_SERVICES.map((s) => ({ prefix: `/${s.typeName}/`, load: () => load(s) })),
    (prefix, err) => rpcLog.error("could not load an RPC service", { service: prefix, err }),
  );
}
