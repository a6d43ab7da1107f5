#!/usr/bin/env bash
# Builds what the VM test boots: Debian's stock kernel and an initramfs holding a minimal rootfs
# with our compiled envd installed by deploy/install.sh (busybox init as PID 1, envd respawned;
# or envd itself as PID 1).
#
# Usage: test/vm/image.sh [--bin dist/envd]
# Writes into $ENVD_VM_WORK (default /tmp/envd-vm):
#   kernel/vmlinux      the uncompressed kernel taken out of Debian's bzImage (QEMU boots it
#                       through its PVH entry point: no real-mode setup, no decompression)
#   kernel/modules/     the package's modules (with a modules.dep made here)
#   initramfs.cpio      the guest's whole root file system (uncompressed: nothing to unpack
#                       slowly under emulation)
# Installs the Debian packages it needs when they are missing (apt-get; root). The kernel package
# (what linux-image-amd64 depends on) is downloaded with apt-get download and unpacked here: the
# host's own kernel and /boot are never touched.
#
# The guest has no Node, Bun or npm: busybox (static), bash (the e2b SDK runs `/bin/bash -l -c`),
# setpriv and ionice from util-linux and nice from coreutils (the launch wrapper looks them up on
# PATH), the glibc those need, the virtio modules, /etc/{passwd,group} with root and `user`
# (uid 1000, as in E2B templates), and /usr/bin/envd. (/init sets the clock with clock_settime
# through FFI: no `date` is needed beyond busybox's.)
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${ENVD_VM_WORK:-/tmp/envd-vm}"
BIN="$ROOT_DIR/dist/envd"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    *) echo "image.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { printf '[vm-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (apt-get, device nodes and file owners in the image)"
[ -x "$BIN" ] || die "no envd binary at $BIN (npm run build)"
mkdir -p "$WORK"

# --- host packages -----------------------------------------------------------------------------
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
apt_update() {
  # once per day at most
  if [ -z "$(find "$WORK/.apt-updated" -mmin -1440 2>/dev/null)" ]; then
    apt-get update -qq && touch "$WORK/.apt-updated"
  fi
}
command -v apt-get >/dev/null || die "apt-get not found: the VM test expects a Debian/Ubuntu host"
ensure_pkgs qemu-system-x86 busybox-static cpio kmod xz-utils zstd binutils util-linux coreutils bash

# --- kernel ------------------------------------------------------------------------------------
K="$WORK/kernel"
M="$K/modules"
# The drivers for the microvm's virtio-mmio devices (all modules in Debian's kernel), and ext4
# (with the crc32c its metadata checksums ask the crypto API for) for the Wrenn test's volume.
MODULES="virtio_mmio virtio_net virtio-rng virtio_blk ext4 crc32c_generic crc32c-intel"
# Module paths of $MODULES and their dependencies, in load order (from modules.dep) → $order.
declare -A seen=()
order=()
modpath() { awk -F: -v a="/$1.ko" '{ if (substr($1, length($1) - length(a) + 1) == a) { print $1; exit } }' "$M/modules.dep"; }
visit() {
  local p="$1" d
  [ -n "${seen[$p]:-}" ] && return 0
  seen[$p]=1
  for d in $(awk -F: -v p="$p" '$1 == p { print $2; exit }' "$M/modules.dep"); do visit "$d"; done
  order+=("$p")
}
resolve_modules() {
  local m p
  seen=(); order=()
  for m in $MODULES; do
    p="$(modpath "$m")"
    [ -n "$p" ] || { log "module $m not found (built in?)"; continue; }
    visit "$p"
  done
}
pkg="$(cat "$K/package" 2>/dev/null || true)"
if [ -z "$pkg" ] || [ ! -f "$K/vmlinux" ] || [ ! -f "$M/modules.dep" ] || [ "$(cat "$K/modules.wanted" 2>/dev/null)" != "$MODULES" ]; then
  apt_update
  pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"
  [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
  log "fetching kernel package $pkg"
  rm -rf "$K"; mkdir -p "$K/dl"
  (cd "$K/dl" && apt-get download "$pkg" 2>&1 | grep -v 'Download is performed unsandboxed' >&2 || true)
  deb="$(ls "$K"/dl/*.deb 2>/dev/null | head -1)"
  [ -f "$deb" ] || die "apt-get download $pkg failed"
  dpkg-deb -x "$deb" "$K/root"
  ver="$(ls "$K/root/lib/modules" | head -1)"
  depmod -b "$K/root" "$ver"   # the package ships no modules.dep
  mv "$K/root/lib/modules/$ver" "$K/modules"
  cp "$K/root/boot/vmlinuz-$ver" "$K/vmlinuz"
  echo "$ver" > "$K/version"
  rm -rf "$K/root" "$K/dl"
  # The ELF kernel inside the bzImage carries the PVH entry note QEMU can boot directly.
  ok=0
  for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$K/vmlinuz" | cut -d: -f1); do
    tail -c +$((off + 1)) "$K/vmlinuz" | xz -dc --single-stream > "$K/vmlinux" 2>/dev/null || true
    if [ "$(head -c 4 "$K/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then ok=1; break; fi
  done
  [ "$ok" = 1 ] || die "could not take vmlinux out of $K/vmlinuz"
  rm -f "$K/vmlinuz"
  # Keep only the modules the guest loads (the package unpacks to ~400 MB).
  resolve_modules
  (cd "$M" && find . -name '*.ko' | sed 's|^\./||') | while read -r ko; do
    [ -n "${seen[$ko]:-}" ] || rm -f "$M/$ko"
  done
  find "$M" -type d -empty -delete
  echo "$MODULES" > "$K/modules.wanted"
  echo "$pkg" > "$K/package"
fi
resolve_modules
KVER="$(cat "$K/version")"
log "kernel $pkg ($KVER)"

# --- root file system --------------------------------------------------------------------------
R="$WORK/rootfs"
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,home/user,lib/modules}
chmod 1777 "$R/tmp"; chmod 700 "$R/root"
mknod -m 600 "$R/dev/console" c 5 1
mknod -m 666 "$R/dev/null" c 1 3

# Host programs with every library ldd names (copied to the same paths).
copy_libs() { # host-binary
  local lib
  ldd "$1" 2>/dev/null | awk '/=>/ {print $3} /^\s*\/.*ld-linux/ {print $1}' | while read -r lib; do
    [ -f "$lib" ] || continue
    [ -e "$R$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$R$lib"
  done
}
copy_prog() { # host-path
  install -D -m 755 "$(readlink -f "$1")" "$R$1"
  copy_libs "$1"
}
# busybox and its applets (a link only where no real program is installed below)
install -m 755 /bin/busybox "$R/bin/busybox"
copy_prog /bin/bash
copy_prog /usr/bin/setpriv
copy_prog /usr/bin/ionice
copy_prog /usr/bin/nice
# Block volumes (/volumes/mount) and prepare's fstrim: util-linux blkid and fstrim, e2fsprogs'
# mkfs.ext4 (mke2fs picks ext4 from its name).
ensure_pkgs e2fsprogs
for p in /usr/sbin/blkid /usr/sbin/fstrim /usr/sbin/mkfs.ext4; do
  [ -e "$p" ] || p="/sbin/${p##*/}"
  copy_prog "$p"
done
for a in $("$R/bin/busybox" --list); do
  [ "$a" = busybox ] || [ -e "$R/bin/$a" ] || [ -e "$R/usr/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
# What envd needs: glibc (npm run build lists the libraries in dist/envd.needed). It also dlopens
# libc.so.6 itself for its FFI calls.
copy_libs "$BIN"
[ -f "$BIN.needed" ] || die "no $BIN.needed (written by npm run build)"
while IFS=$'\t' read -r _soname lib; do
  [ -e "$R$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$R$lib"
done < "$BIN.needed"
[ -e "$R/lib64/ld-linux-x86-64.so.2" ] || install -D -m 755 /lib64/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"

# Accounts: root, and `user` (uid 1000) with a supplementary group, as E2B templates have.
cat > "$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/bash
user:x:1000:1000:user:/home/user:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$R/etc/group" <<'EOF'
root:x:0:
tty:x:5:
sandbox:x:2000:user
user:x:1000:
nogroup:x:65534:
EOF
chown 1000:1000 "$R/home/user"
echo envd-vm > "$R/etc/hostname"
printf '127.0.0.1 localhost envd-vm\n::1 localhost\n' > "$R/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$R/etc/nsswitch.conf"
: > "$R/etc/resolv.conf"
printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' > "$R/etc/profile"

# Kernel modules for the microvm's virtio-mmio devices, in dependency order.
for p in "${order[@]}"; do install -D -m 644 "$M/$p" "$R/lib/modules/$KVER/$p"; done

# envd, the way a template gets it: busybox init as PID 1 (the default boot, /sbin/init), and
# the files for envd itself as PID 1 (booted with rdinit=/usr/lib/envd/envd-init).
"$ROOT_DIR/deploy/install.sh" --root "$R" --bin "$BIN" --init busybox --args "-isnotfc"
"$ROOT_DIR/deploy/install.sh" --root "$R" --bin "$BIN" --init envd

# The VM's own boot step (a sysinit hook): virtio modules, then the QEMU user-mode network.
{
  echo '#!/bin/sh'
  echo '# VM test guest: load the virtio-mmio drivers, then configure QEMU user networking.'
  for p in "${order[@]}"; do echo "insmod /lib/modules/$KVER/$p"; done
  cat <<'EOF'
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i + 1)); done
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
EOF
} > "$R/etc/envd/sysinit.d/10-vm-network"
chmod 755 "$R/etc/envd/sysinit.d/10-vm-network"
# The VM test boots the same image in either flavor: `envd.flavor=wrenn` on the kernel command
# line makes envd a Wrenn guest (the sysinit hooks run before init starts envd).
cat > "$R/etc/envd/sysinit.d/20-vm-flavor" <<'EOF2'
#!/bin/sh
# VM test guest: envd.flavor=NAME on the kernel command line sets envd's -flavor.
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    envd.flavor=*) sed -i "s|^ENVD_ARGS=\"\(.*\)\"|ENVD_ARGS=\"\1 -flavor ${arg#envd.flavor=}\"|" /etc/default/envd ;;
  esac
done
EOF2
chmod 755 "$R/etc/envd/sysinit.d/20-vm-flavor"

# Nothing of the build machine's runtimes may be in the image.
for x in node bun npm; do
  [ -z "$(find "$R" -name "$x" -type f 2>/dev/null)" ] || die "$x found in the guest image"
done

OUT="$WORK/initramfs.cpio"
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) > "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
log "rootfs $(du -sh "$R" | cut -f1), initramfs $OUT ($(du -h "$OUT" | cut -f1)), envd $(stat -c %s "$BIN") bytes"
