/**
 * Where the VM-facing parts of the daemon read and write (metadata service, run dir, hosts file,
 * CA bundle, clock), and the names each host flavor expects. Pure: parsing touches nothing.
 *
 * The defaults are the production paths. The `ENVD_*` variables below exist so tests (and unusual
 * images) can point the daemon at a fake metadata server and temporary files; they are read once
 * at start.
 */
/** Which host talks to us: decides the `/health` answer and the names of internal files and variables. */
export type Flavor = "e2b" | "wrenn";

export interface VmConfig {
  /** Firecracker MMDS base URL (`ENVD_MMDS_URL`). */
  mmdsUrl: string;
  /** Directory of the sandbox marker and id files (`ENVD_RUN_DIR`). */
  runDir: string;
  /** Hosts file where the events host name is pinned (`ENVD_HOSTS_FILE`). */
  hostsFile: string;
  /** System CA bundle that /init's caBundle is appended to (`ENVD_CA_BUNDLE`). */
  caBundlePath: string;
  /** Where the installed CA is persisted for update-ca-certificates (`ENVD_CA_CERT`). */
  caCertPath: string;
  /**
   * Program that sets the clock, run as `<program> @<seconds>.<nanoseconds>` (`ENVD_CLOCK_COMMAND`).
   * Undefined: `date -u -s @<seconds>.<nanoseconds>`. Tests name a recorder here so the machine's
   * clock is never touched.
   */
  clockCommand: string | undefined;
  /**
   * Program run as `<program> -a makestep` to make chrony step (`ENVD_CHRONYC_COMMAND`): after a new
   * lifecycle_id on /init and after a restore. Undefined: `chronyc` from PATH. Tests name a
   * recorder here so the machine's chrony is never told to step.
   */
  chronycCommand: string | undefined;
  /** Where block devices are listed and their nodes live (`ENVD_SYS_BLOCK_DIR`, `ENVD_DEV_DIR`). */
  sysBlockDir: string;
  devDir: string;
  /**
   * What the memory preloader reads (`ENVD_IOMEM_PATH`, `ENVD_DEV_MEM_PATH`, `ENVD_KCORE_PATH`):
   * tests name small files here, so a test never walks the RAM of the machine it runs on.
   */
  memory: { iomem: string; devMem: string; kcore: string };
}

/** The flavor-specific names of internal variables, files and hosts (docs/protocol.md §6.5, §7.1). */
export interface FlavorNames {
  /** `E2B_SANDBOX`: "true" in Firecracker, "false" with -isnotfc. Also the marker file's name. */
  sandbox: string;
  sandboxId: string;
  templateId: string;
  /** Wrenn's proxy domain (`envd ports` builds URLs with it); set by /init `proxy_domain`. */
  proxyDomain: string;
  eventsAddress: string;
  eventsHost: string;
}

export function flavorNames(flavor: Flavor): FlavorNames {
  const p = flavor === "wrenn" ? "WRENN" : "E2B";
  return {
    sandbox: `${p}_SANDBOX`,
    sandboxId: `${p}_SANDBOX_ID`,
    templateId: `${p}_TEMPLATE_ID`,
    proxyDomain: `${p}_PROXY_DOMAIN`,
    eventsAddress: `${p}_EVENTS_ADDRESS`,
    eventsHost: flavor === "wrenn" ? "events.wrenn.local" : "events.e2b.local",
  };
}

/** Variables only the daemon sets: /init's envVars cannot define or override them. */
export function internalEnvNames(names: FlavorNames): Set<string> {
  return new Set([names.sandbox, names.sandboxId, names.templateId, names.proxyDomain, names.eventsAddress]);
}

export function parseVmConfig(env: NodeJS.ProcessEnv, flavor: Flavor): VmConfig {
  const nonEmpty = (v: string | undefined) => (v === undefined || v === "" ? undefined : v);
  return {
    mmdsUrl: (nonEmpty(env.ENVD_MMDS_URL) ?? "http://169.254.169.254").replace(/\/+$/, ""),
    runDir: nonEmpty(env.ENVD_RUN_DIR) ?? (flavor === "wrenn" ? "/run/wrenn" : "/run/e2b"),
    hostsFile: nonEmpty(env.ENVD_HOSTS_FILE) ?? "/etc/hosts",
    caBundlePath: nonEmpty(env.ENVD_CA_BUNDLE) ?? "/etc/ssl/certs/ca-certificates.crt",
    caCertPath:
      nonEmpty(env.ENVD_CA_CERT) ??
      `/usr/local/share/ca-certificates/${flavor === "wrenn" ? "wrenn" : "e2b"}-ca.crt`,
    clockCommand: nonEmpty(env.ENVD_CLOCK_COMMAND),
    chronycCommand: nonEmpty(env.ENVD_CHRONYC_COMMAND),
    sysBlockDir: nonEmpty(env.ENVD_SYS_BLOCK_DIR) ?? "/sys/block",
    devDir: nonEmpty(env.ENVD_DEV_DIR) ?? "/dev",
    memory: {
      iomem: nonEmpty(env.ENVD_IOMEM_PATH) ?? "/proc/iomem",
      devMem: nonEmpty(env.ENVD_DEV_MEM_PATH) ?? "/dev/mem",
      kcore: nonEmpty(env.ENVD_KCORE_PATH) ?? "/proc/kcore",
    },
  };
}
