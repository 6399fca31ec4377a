#!/usr/bin/env bash
# Compile and test MC2Core with Swift on Linux: Debian trixie's `swiftlang` (6.0.3: compiler, SwiftPM,
# XCTest, Foundation) inside a trixie root made with debootstrap (trixie's libc; the host may be older).
#
#   examples/ios/swift_linux.sh                 # swift build + swift test (debug), from a clean build
#   examples/ios/swift_linux.sh --root-only     # only make (or find) the root
#   examples/ios/swift_linux.sh -- CMD ...      # run CMD in the package copy inside the root
#                                                 (e.g. -- swift run -c release mc2-index-bench ...)
#
# The root is cached outside the clone, in MC2_SWIFT_ROOT (default /var/cache/mc2export/swift-trixie):
# first use ~30 s (debootstrap) + ~1.5 min (swiftlang, 2.5 GB), later uses reuse it. Creation is atomic: it
# is built in a temporary folder beside the cache and renamed into place only when complete, so a killed
# creation leaves a stale temporary folder (removed by the next run), never a half root taken for a whole one.
# Each run copies examples/ios/MC2Core and examples/shared into a fresh folder of the root (the package's
# tests find the shared vectors at ../../shared, as in the repository) and builds from scratch, so every
# warning of every file is printed on every run. Mounts (/proc, /dev) live in a private mount namespace
# (unshare) and disappear with it, even when the run is killed.
#
# Needs root (debootstrap, chroot, unshare) and the network on first use (MC2_DEBIAN_MIRROR, default
# http://deb.debian.org/debian). Exit status: swift's; 3 when the root cannot be made because the Debian
# archive is unreachable (tests/test_swift.py skips on that one only).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT="${MC2_SWIFT_ROOT:-/var/cache/mc2export/swift-trixie}"
MIRROR="${MC2_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=trixie
# what the root's apt installs; the marker file records it, so changing the list remakes the root
PACKAGES="swiftlang libc6-dev"  # libc6-dev: only recommended by swiftlang (gcc), but swift needs the C headers
STAMP="suite=$SUITE packages=$PACKAGES"
MARKER=".mc2export-swift-root"
ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb)

log() { echo "[swift_linux $(date +%H:%M:%S)] $*" >&2; }

mode=test
cmd=()
while [ $# -gt 0 ]; do
  case "$1" in
    --root-only) mode=root; shift ;;
    --) shift; mode=cmd; cmd=("$@"); break ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "error: swift_linux.sh needs root (debootstrap, chroot, unshare)" >&2; exit 2
fi

# Run "$@" chrooted in $1 with /proc and /dev mounted in a private mount namespace (gone when it exits).
in_root() {
  local root="$1"; shift
  unshare --mount --propagation private --pid --fork /bin/bash -c '
    set -e; root="$1"; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" "$@"' in_root "$root" "${ENV[@]}" "$@"
}

make_root() {
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  fi
  local parent; parent="$(dirname "$ROOT")"
  mkdir -p "$parent"
  # a creation killed earlier left its temporary folder: nothing else uses them (we hold the lock)
  find "$parent" -maxdepth 1 -name "$(basename "$ROOT").tmp.*" -exec rm -rf --one-file-system {} +
  local tmp; tmp="$(mktemp -d "$ROOT.tmp.XXXXXX")"
  chmod 755 "$tmp"
  local t0=$SECONDS
  log "debootstrap $SUITE (minbase) from $MIRROR into $tmp"
  if ! debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1; then
    tail -20 "$tmp.log" >&2
    if grep -qiE "Failed getting release file|Temporary failure resolving|Could not resolve|Connection refused|Network is unreachable|unable to fetch|Couldn't download" "$tmp.log"; then
      echo "error: the Debian archive ($MIRROR) cannot be reached: the Swift root cannot be made" >&2
      rm -rf --one-file-system "$tmp" "$tmp.log"; exit 3
    fi
    rm -rf --one-file-system "$tmp"; exit 1
  fi
  log "debootstrap: $((SECONDS - t0)) s; apt-get install $PACKAGES"
  t0=$SECONDS
  in_root "$tmp" /bin/sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends $PACKAGES >/dev/null && apt-get clean"
  in_root "$tmp" swift --version
  log "swiftlang: $((SECONDS - t0)) s"
  echo "$STAMP" >"$tmp/$MARKER"
  rm -f "$tmp.log"
  # the rename is the commit point: a root without the marker, or an older one, goes aside first
  if [ -e "$ROOT" ]; then mv "$ROOT" "$ROOT.tmp.old$$"; rm -rf --one-file-system "$ROOT.tmp.old$$"; fi
  mv "$tmp" "$ROOT"
}

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [ "$(cat "$ROOT/$MARKER" 2>/dev/null)" != "$STAMP" ]; then
  make_root
else
  log "reusing $ROOT"
fi
[ "$mode" = root ] && exit 0

# A fresh copy of the package per run, removed after it (runs killed earlier left theirs: those older than a
# day go).
mkdir -p "$ROOT/src"
find "$ROOT/src" -mindepth 1 -maxdepth 1 -mmin +1440 -exec rm -rf --one-file-system {} +
work="$(mktemp -d "$ROOT/src/run.XXXXXX")"
work="${work#"$ROOT"}"
trap 'rm -rf --one-file-system "$ROOT$work"' EXIT
mkdir -p "$ROOT$work/examples/ios"
cp -a "$REPO/examples/ios/MC2Core" "$ROOT$work/examples/ios/"
cp -a "$REPO/examples/shared" "$ROOT$work/examples/"
rm -rf "$ROOT$work/examples/ios/MC2Core/.build"
flock -u 9  # the copy is ours: other runs may go on beside this one

pkg="$work/examples/ios/MC2Core"
if [ "$mode" = cmd ]; then
  in_root "$ROOT" /bin/sh -c 'cd "$0" && exec "$@"' "$pkg" "${cmd[@]}"
  exit 0
fi
log "swift build ($pkg)"
in_root "$ROOT" /bin/sh -c 'cd "$0" && swift --version 2>&1 && swift build --build-tests 2>&1 && swift test --skip-build 2>&1' "$pkg"
