#!/usr/bin/env bash
# Installs envd into a root file system (a template image being built, a mounted ext4 image, an
# unpacked initramfs, or the running system) the way E2B and Wrenn templates expect it:
#
#   /usr/bin/envd                            the binary (npm run build → dist/envd), 0755
#   /etc/default/envd                        ENVD_ARGS, the daemon's flags
#   --init systemd:
#     /etc/systemd/system/envd.service       Restart=always, OOMScoreAdjust=-1000, started early
#     /etc/systemd/system/sysinit.target.wants/envd.service -> ../envd.service
#   --init busybox (images without systemd): busybox init is PID 1, reaps, and respawns envd
#     /usr/lib/envd/{init,sysinit,envd-run}  init -> busybox, the machine setup, the runner
#     /etc/inittab                           ::respawn:/usr/lib/envd/envd-run (added to an
#                                            existing inittab, or a new one with our sysinit)
#     /sbin/init -> /usr/lib/envd/init       only when the image has no /sbin/init
#   --init envd (Wrenn's way): envd itself is PID 1, with its own reaping init in front of the
#     daemon that restarts it when it dies
#     /usr/lib/envd/{envd-init,sysinit,envd-run}
#     /sbin/init -> /usr/lib/envd/envd-init  only when the image has no /sbin/init
#
# Usage: deploy/install.sh [--root DIR] [--bin FILE] [--init auto|systemd|busybox|envd|none]
#                          [--args "FLAGS"] [--busybox FILE]
#   --root     the root file system to install into (default /)
#   --bin      the envd binary (default dist/envd of this checkout)
#   --init     auto (default): systemd when DIR has systemd, else busybox
#   --args     envd flags written to /etc/default/envd, e.g. "-isnotfc" outside Firecracker or
#              "-flavor wrenn" (an existing file is kept unless --args is given)
#   --busybox  a static busybox to copy to /usr/bin/busybox when the image has none
#              (Debian: busybox-static's /bin/busybox)
# When the image has its own /sbin/init, boot with init=/usr/lib/envd/init (busybox) or
# init=/usr/lib/envd/envd-init (envd), rdinit= for an initramfs. Nothing outside DIR is touched.
# Run as root, so that the files are owned by root.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ROOT=/ BIN="$HERE/../dist/envd" INIT=auto ARGS="" ARGS_SET=0 BUSYBOX_SRC=""
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?}"; shift 2 ;;
    --bin) BIN="${2:?}"; shift 2 ;;
    --init) INIT="${2:?}"; shift 2 ;;
    --args) ARGS="$2"; ARGS_SET=1; shift 2 ;;
    --busybox) BUSYBOX_SRC="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) die "unknown option $1 (--help lists them)" ;;
  esac
done
[ -d "$ROOT" ] || die "--root $ROOT is not a directory"
ROOT="$(cd "$ROOT" && pwd)"
R="${ROOT%/}"   # "" for the running system, so "$R/usr/bin" is always right
[ -f "$BIN" ] || die "no envd binary at $BIN (run npm run build, or pass --bin)"
case "$ARGS" in *[\'\"\\\`\$]*) die "--args must not contain quotes, backslashes, \` or \$" ;; esac

has_systemd() { [ -x "$R/lib/systemd/systemd" ] || [ -x "$R/usr/lib/systemd/systemd" ]; }
if [ "$INIT" = auto ]; then
  if has_systemd; then INIT=systemd; else INIT=busybox; fi
fi
case "$INIT" in systemd|busybox|envd|none) ;; *) die "--init must be auto, systemd, busybox, envd or none" ;; esac

# A path inside the image, following absolute symlinks as the guest would see them.
in_image() { # path-in-guest
  local p="$1" n=0 t
  while [ -L "$R$p" ] && [ $n -lt 16 ]; do
    t="$(readlink "$R$p")"
    case "$t" in /*) p="$t" ;; *) p="$(dirname "$p")/$t" ;; esac
    n=$((n + 1))
  done
  echo "$p"
}

# Check everything before writing anything. Which busybox: the image's own, else --busybox.
bb=""
if [ "$INIT" = busybox ]; then
  for p in /bin/busybox /usr/bin/busybox /sbin/busybox /usr/sbin/busybox; do
    if [ -x "$R$(in_image "$p")" ]; then bb="$p"; break; fi
  done
  if [ -z "$bb" ] && [ -n "$BUSYBOX_SRC" ]; then
    [ -f "$BUSYBOX_SRC" ] && [ -x "$BUSYBOX_SRC" ] || die "--busybox $BUSYBOX_SRC is not an executable file"
    bb=/usr/bin/busybox
  fi
  [ -n "$bb" ] || die "the image has no busybox (install busybox-static in it, or pass --busybox FILE)"
elif [ "$INIT" = envd ]; then
  # busybox is optional here: sysinit falls back to it only for tools the image lacks.
  for p in /bin/busybox /usr/bin/busybox /sbin/busybox /usr/sbin/busybox; do
    if [ -x "$R$(in_image "$p")" ]; then bb="$p"; break; fi
  done
  bb="${bb:-busybox}"
fi

# The binary: write next to the target and rename, so a running envd keeps its old inode.
install -d -m 755 "$R/usr/bin"
install -m 755 "$BIN" "$R/usr/bin/.envd.new"
mv -f "$R/usr/bin/.envd.new" "$R/usr/bin/envd"
say "installed $R/usr/bin/envd ($(stat -c %s "$R/usr/bin/envd") bytes)"

install -d -m 755 "$R/etc/default"
if [ "$ARGS_SET" = 1 ] || [ ! -e "$R/etc/default/envd" ]; then
  sed -E "s|^ENVD_ARGS=.*|ENVD_ARGS=\"$ARGS\"|" "$HERE/envd.default" > "$R/etc/default/envd"
  chmod 644 "$R/etc/default/envd"
  say "wrote $R/etc/default/envd (ENVD_ARGS=\"$ARGS\")"
fi

case "$INIT" in
  systemd)
    install -d -m 755 "$R/etc/systemd/system/sysinit.target.wants"
    install -m 644 "$HERE/envd.service" "$R/etc/systemd/system/envd.service"
    ln -sfn ../envd.service "$R/etc/systemd/system/sysinit.target.wants/envd.service"
    say "installed and enabled envd.service (sysinit.target.wants)"
    ;;
  busybox|envd)
    if [ "$bb" = /usr/bin/busybox ] && [ -n "$BUSYBOX_SRC" ] && [ ! -e "$R/usr/bin/busybox" ]; then
      install -m 755 "$BUSYBOX_SRC" "$R/usr/bin/busybox"
      say "copied $BUSYBOX_SRC to $R/usr/bin/busybox"
    fi
    install -d -m 755 "$R/usr/lib/envd" "$R/etc/envd/sysinit.d"
    for f in sysinit envd-run envd-init; do
      sed "s|@BUSYBOX@|$bb|g" "$HERE/lib/$f" > "$R/usr/lib/envd/$f"
      chmod 755 "$R/usr/lib/envd/$f"
    done
    if [ "$INIT" = busybox ]; then
      ln -sfn "$bb" "$R/usr/lib/envd/init"   # busybox runs the applet named like the link: init
      if [ ! -e "$R/etc/inittab" ]; then
        sed "s|@BUSYBOX@|$bb|g" "$HERE/inittab" > "$R/etc/inittab"
        chmod 644 "$R/etc/inittab"
        say "wrote $R/etc/inittab"
      elif ! grep -q '^[^#]*:respawn:/usr/lib/envd/envd-run' "$R/etc/inittab"; then
        printf '# envd (deploy/install.sh): started again whenever it exits\n::respawn:/usr/lib/envd/envd-run\n' >> "$R/etc/inittab"
        say "added envd to the existing $R/etc/inittab (its sysinit stays; /usr/lib/envd/sysinit is not run)"
      fi
      init_path=/usr/lib/envd/init
    else
      init_path=/usr/lib/envd/envd-init
    fi
    if [ "$(readlink "$R/sbin/init" 2>/dev/null)" = "$init_path" ]; then
      :
    elif [ ! -e "$R/sbin/init" ] && [ ! -L "$R/sbin/init" ]; then
      install -d -m 755 "$R/sbin"
      ln -s "$init_path" "$R/sbin/init"
      say "linked /sbin/init -> $init_path"
    else
      say "the image has its own /sbin/init: boot with init=$init_path (rdinit= for an initramfs)"
    fi
    if [ "$INIT" = busybox ]; then
      say "busybox init ($bb) will run envd and restart it when it exits"
    else
      say "envd will be PID 1, with its reaping init restarting the daemon when it dies"
    fi
    ;;
  none)
    say "no init integration (--init none): start /usr/bin/envd yourself"
    ;;
esac
