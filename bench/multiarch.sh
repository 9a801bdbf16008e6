#!/usr/bin/env bash
# Multi-architecture builds, each comparison alternating its commands round by round in one run
# (bench/alternate.py prints wall and CPU medians and the ratios imgbuild/peer):
#   1. an aarch64 root under qemu-user: `imgbuild prepare --target-arch aarch64` (warm package
#      cache, no snapshot, no lock) against `mmdebstrap --arch=arm64 --variant=minbase` of the
#      same suite from the same mirror (the host's apt sources) on the same binfmt set-up;
#   2. `imgbuild build --target-arch x86_64,aarch64` against the two single-architecture builds
#      run one after the other (both warm package cache, --force --no-snapshot: real builds);
#   3. a hit of the registry build cache against a warm local build (bench/registry-cache.sh).
# qemu-user-static's aarch64 handler is registered for the run when it is not (and removed
# again at the end).
#
# Usage: bench/multiarch.sh [ROUNDS]   (as root; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rounds=${1:-3}
suite=bookworm
[ "$(id -u)" = 0 ] || { echo "bench/multiarch.sh needs root" >&2; exit 1; }
for t in cargo python3 mmdebstrap; do
  command -v "$t" >/dev/null || { echo "bench/multiarch.sh needs $t" >&2; exit 1; }
done
[ -f /usr/lib/binfmt.d/qemu-aarch64.conf ] || { echo "needs qemu-user-static (apt-get install qemu-user-static arch-test)" >&2; exit 1; }

# The host's Debian archive (never written into the repository).
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}';
           cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
             awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }') |
         grep -v -- '-security' | grep '/debian/\?$' | head -1 || true)
[ -n "$mirror" ] || { echo "no Debian archive in the host's apt sources" >&2; exit 1; }

# binfmt_misc and the aarch64 handler, undone on exit when this script set them up.
binfmt=/proc/sys/fs/binfmt_misc
undo=()
cleanup() {
  for ((i = ${#undo[@]} - 1; i >= 0; i--)); do eval "${undo[$i]}" || true; done
  rm -rf "${W:-/nonexistent}"
}
trap cleanup EXIT
if [ ! -e "$binfmt/status" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt"
  undo+=("umount $binfmt")
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
  tr -d '\n' </usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register"
  undo+=("echo -1 > $binfmt/qemu-aarch64")
fi

echo "building the release binary ..." >&2
cargo build --release --quiet --bin imgbuild >&2
bin=${CARGO_TARGET_DIR:-$repo/target}/release/imgbuild
desc=$repo/descriptions/debian-minimal
W=$(mktemp -d /var/tmp/imgbuild-bench-multiarch.XXXXXX)
cache=$W/cache
export IMGBUILD_STORAGE_ROOT=$W/store
load() { echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) ($1)"; }
echo "suite $suite, mirror from the host's apt sources: $mirror"

echo "warming the package cache for both architectures ..." >&2
"$bin" build "$desc" --profile $suite --no-lock --target-arch x86_64,aarch64 \
  --cache-dir "$cache" --target-dir "$W/warm" >/dev/null 2>"$W/warm.log" ||
  { tail -n 20 "$W/warm.log" >&2; exit 1; }

echo
echo "== 1. an aarch64 root under qemu-user ($rounds rounds, alternating) =="
load before
python3 bench/alternate.py --rounds "$rounds" --setup "rm -rf $W/root-imgbuild $W/root-mmdebstrap" \
  "imgbuild=$bin prepare $desc --profile $suite --no-lock --no-snapshot --target-arch aarch64 --root $W/root-imgbuild --cache-dir $cache" \
  "mmdebstrap=mmdebstrap --arch=arm64 --variant=minbase --quiet --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr $suite $W/root-mmdebstrap $mirror </dev/null"
load after

echo
echo "== 2. two architectures in one build against two builds one after the other ($rounds rounds) =="
common="--profile $suite --no-lock --no-snapshot --force --cache-dir $cache"
load before
python3 bench/alternate.py --rounds "$rounds" --setup "rm -rf $W/two $W/x86 $W/arm" \
  "two-arch=$bin build $desc $common --target-arch x86_64,aarch64 --target-dir $W/two" \
  "sequential=$bin build $desc $common --target-arch x86_64 --oci-dir --target-dir $W/x86 && $bin build $desc $common --target-arch aarch64 --oci-dir --target-dir $W/arm"
load after

if [ -x bench/registry-cache.sh ]; then
  echo
  echo "== 3. a registry build cache hit against a warm local build =="
  BIN=$bin bench/registry-cache.sh
fi
