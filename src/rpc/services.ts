/**
 * The RPC services the daemon mounts, in one list: the server routes their paths to the Connect
 * adapter, protocol-errors.ts knows their methods, and the auth table (http/auth-table.ts) must
 * have a row for each (its test enumerates this list).
 */
import type { DescService } from "@bufbuild/protobuf";
import { Ports } from "../gen/envd/ports_pb.js";
import { Filesystem } from "../gen/filesystem/filesystem_pb.js";
import { Process } from "../gen/process/process_pb.js";

export const RPC_SERVICES: readonly DescService[] = [Process, Filesystem, Ports];

/** `/<package>.<Service>/` of each service: the paths the server hands to the adapter. */
export const RPC_PREFIXES: readonly string[] = RPC_SERVICES.map((s) => `/${s.typeName}/`);
