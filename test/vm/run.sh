#!/usr/bin/env bash
# npm run test:vm — build the binary, build the guest image, boot it in QEMU and test it.
# Needs root (apt-get for QEMU and the kernel package, device nodes and owners in the image).
# Environment: ENVD_VM_WORK (default /tmp/envd-vm) holds the kernel, image, snapshot and timings;
# ENVD_VM_ACCEL=kvm|tcg overrides the accelerator choice.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "test:vm: SKIPPED: needs root (apt-get, device nodes in the guest image)" >&2
  exit 0
fi
scripts/build.sh
test/vm/image.sh
exec node_modules/.bin/node --test --test-concurrency=1 test/vm/*.test.ts
