#!/usr/bin/env bash
# npm run build: compile the daemon into one self-contained executable, dist/envd.
#
# `bun build --compile` bundles src/ and every dependency together with the Bun runtime into a
# single file. The result needs only a Linux kernel and glibc (libc, libm, libpthread, libdl):
# no Node, Bun, npm or node_modules on the target rootfs. It reports version 0.6.4 (src/version.ts)
# and the git commit it was built from (`envd -version`, `envd -commit`).
#
# Environment:
#   ENVD_OUT     output path (default dist/envd)
#   ENVD_COMMIT  commit to stamp (default: `git rev-parse HEAD`, with "-dirty" when src/ or the
#                lock file differ from HEAD; "unknown" outside a git checkout)
#   ENVD_TARGET  Bun compile target (default: this machine). Other targets are fetched by Bun from
#                the npm registry, e.g. bun-linux-x64-baseline (CPUs without AVX2) or bun-linux-arm64.
set -euo pipefail
cd "$(dirname "$0")/.."

BUN=node_modules/.bin/bun
[ -x "$BUN" ] || { echo "build: $BUN missing; run npm ci first" >&2; exit 1; }
OUT="${ENVD_OUT:-dist/envd}"

commit="${ENVD_COMMIT:-}"
if [ -z "$commit" ]; then
  if commit="$(git rev-parse HEAD 2>/dev/null)"; then
    # Several people may share a working tree: only what goes into the binary counts as dirty.
    if ! git diff --quiet HEAD -- src package.json package-lock.json \
      || [ -n "$(git ls-files --others --exclude-standard -- src)" ]; then
      commit="$commit-dirty"
    fi
  else
    commit=unknown
  fi
fi
case "$commit" in *[!A-Za-z0-9._-]*) echo "build: bad ENVD_COMMIT '$commit'" >&2; exit 1 ;; esac

target=()
[ -n "${ENVD_TARGET:-}" ] && target=(--target "$ENVD_TARGET")

mkdir -p "$(dirname "$OUT")"
tmp="$OUT.tmp.$$"
meta="$OUT.meta.$$.json"
trap 'rm -f "$tmp" "$meta"' EXIT
# --define replaces `process.env.ENVD_COMMIT` in src/version.ts with the literal commit, so the
#   binary carries its commit whatever its environment holds.
# --format esm --bytecode ships JavaScriptCore bytecode next to the source: a faster start (about a third less
#   on this machine), which matters most on a freshly booted or restored VM.
# --minify --keep-names: 1 MB less of our code in the binary (docs/benchmarks.md, binary size);
#   function and class names stay, so stack traces in the logs still say which function failed.
#   No source map: it would add 1.6 MB for line numbers of a build nobody debugs on the target.
# --splitting: what the daemon imports on first use (each Connect service with its descriptors,
#   /files with zlib, busboy, the Content-Type table) goes into chunks of its own, loaded when imported. In one
#   chunk, the whole bundle's bytecode is loaded at start: 6 MiB more resident when idle.
# --no-compile-autoload-dotenv / -bunfig: a compiled Bun program otherwise reads `.env` and
#   `bunfig.toml` from its working directory at every start, into its own environment.
# Every worker thread (src/**/*-worker.ts: the watch thread, the memory preloader) is an entry point
#   of its own: the binary holds it as /$bunfs/root/<path under src/> (fs/watch-engine.ts,
#   sys/worker-url.ts find it there). A worker left out could not start.
# @lydell/node-pty is only ever loaded under Node (src/process/pty.ts, through createRequire);
#   under Bun PTYs come from Bun.spawn({ terminal }), so the binary neither bundles nor needs it.
"$BUN" build --compile "${target[@]}" \
  --format esm --bytecode --minify --keep-names --splitting \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
  --define "process.env.ENVD_COMMIT=\"$commit\"" \
  --metafile="$meta" \
  --outfile "$tmp" \
  src/main.ts $(find src -name '*-worker.ts' -not -name '*.test.ts' | LC_ALL=C sort) >&2
# Shared libraries the target needs: the runtime's own, plus those of any N-API addon (*.node)
# the bundle embeds (none today: Bun would write an embedded addon to a temporary file and dlopen
# it; the xattr calls go through libc FFI instead).
# Listed in $OUT.needed as "soname<TAB>path on this machine", for rootfs builders.
mapfile -t addons < <("$BUN" -e 'const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const k of Object.keys(m.inputs)) if (k.endsWith(".node")) console.log(k);' "$meta")
{
  for f in "$tmp" "${addons[@]}"; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $1 "\t" $3 } $1 ~ /^\/.*ld-linux/ { n = split($1, p, "/"); print p[n] "\t" $1 }'
  done
} | sort -u > "$OUT.needed.tmp"
mv -f "$tmp" "$OUT"
mv -f "$OUT.needed.tmp" "$OUT.needed"
rm -f "$meta"
trap - EXIT

# Smoke-check the result when it can run here.
if [ -z "${ENVD_TARGET:-}" ]; then
  want_version="$(sed -nE 's/^export const ENVD_VERSION = "([^"]+)";/\1/p' src/version.ts)"
  got_version="$("$OUT" -version)"
  got_commit="$("$OUT" -commit)"
  [ "$got_version" = "$want_version" ] || { echo "build: -version printed '$got_version', want '$want_version'" >&2; exit 1; }
  [ "$got_commit" = "$commit" ] || { echo "build: -commit printed '$got_commit', want '$commit'" >&2; exit 1; }
fi

bytes="$(stat -c %s "$OUT")"
echo "build: embedded native addons: ${addons[*]:-none}; shared libraries needed: $(cut -f1 "$OUT.needed" | tr '\n' ' ')" >&2
echo "build: $OUT  version $(sed -nE 's/^export const ENVD_VERSION = "([^"]+)";/\1/p' src/version.ts)  commit $commit  $((bytes / 1048576)) MiB ($bytes bytes)" >&2
