/**
 * The envd version this daemon reports (`-version`, `/health`, `X-Envd-Version`).
 *
 * A contract, not a build number: the E2B SDKs switch features on by it (docs/compatibility.md).
 * 0.6.4 is the newest version any SDK feature gate asks for (watch `allowNetworkMounts`), and every
 * feature up to it is implemented here. Raise it only together with the behaviour it promises.
 */
export const ENVD_VERSION = "0.6.4";

/** Build commit, stamped by `npm run build` through ENVD_COMMIT; `unknown` when run from source. */
export const BUILD_COMMIT: string = process.env.ENVD_COMMIT ?? "unknown";
