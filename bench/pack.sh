#!/bin/bash
# Packing benchmark: one layer of a root tree written by imgbuild's layer writer against
# `tar --sort=name -c | gzip -6` and `umoci insert`, with hyperfine. Prints the ratios.
#
# usage: bench/pack.sh [ROOT]   (needs root; without ROOT a minbase Debian tree is made once
# with mmdebstrap from the host's apt sources and kept under target/bench-root)
set -euo pipefail
cd "$(dirname "$0")/.."
for t in hyperfine umoci tar gzip jq; do
  command -v "$t" >/dev/null || { echo "pack.sh needs $t" >&2; exit 1; }
done
ROOT=${1:-}
if [ -z "$ROOT" ]; then
  ROOT=$PWD/target/bench-root
  if [ ! -e "$ROOT/etc/debian_version" ]; then
    src=$(ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1 || true)
    suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
    rm -rf "$ROOT"
    mmdebstrap --variant=minbase --mode=root "$suite" "$ROOT" "$src" >&2
  fi
fi
cargo build --release --example image_pack >&2
BIN=$PWD/target/release/examples/image_pack
W=$(mktemp -d /tmp/imgbuild-pack.XXXXXX)
trap 'rm -rf "$W"' EXIT
# umoci needs a layout with an image to insert into.
umoci init --layout "$W/layout" >&2
umoci new --image "$W/layout:base" >&2

echo "tree: $ROOT ($(du -sh --apparent-size "$ROOT" | cut -f1), $(nproc) cores)"
hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$W/result.json" \
  -n imgbuild-gzip "rm -rf $W/b1; $BIN $ROOT $W/b1 gzip" \
  -n imgbuild-zstd "rm -rf $W/b2; $BIN $ROOT $W/b2 zstd" \
  -n tar-gzip6 "tar --sort=name -C $ROOT -c . | gzip -6 > $W/t.tar.gz" \
  -n umoci-insert "umoci insert --image $W/layout:base --tag t $ROOT / >/dev/null && umoci gc --layout $W/layout"
jq -r '.results | map({(.command): .mean}) | add |
  "ratio imgbuild-gzip / tar|gzip-6: \(.["imgbuild-gzip"] / .["tar-gzip6"] * 1000 | round / 1000)",
  "ratio imgbuild-gzip / umoci-insert: \(.["imgbuild-gzip"] / .["umoci-insert"] * 1000 | round / 1000)",
  "ratio imgbuild-zstd / tar|gzip-6: \(.["imgbuild-zstd"] / .["tar-gzip6"] * 1000 | round / 1000)",
  "ratio imgbuild-zstd / umoci-insert: \(.["imgbuild-zstd"] / .["umoci-insert"] * 1000 | round / 1000)"' \
  "$W/result.json"
# CPU time (user+system) ratios: meaningful even when other jobs share the cores.
jq -r '.results | map({(.command): (.user + .system)}) | add |
  "cpu ratio imgbuild-gzip / tar|gzip-6: \(.["imgbuild-gzip"] / .["tar-gzip6"] * 1000 | round / 1000)",
  "cpu ratio imgbuild-gzip / umoci-insert: \(.["imgbuild-gzip"] / .["umoci-insert"] * 1000 | round / 1000)",
  "cpu ratio imgbuild-zstd / umoci-insert: \(.["imgbuild-zstd"] / .["umoci-insert"] * 1000 | round / 1000)"' \
  "$W/result.json"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sizes: imgbuild-gzip $(du -b "$W"/b1/* | cut -f1 | head -1), tar|gzip-6 $(stat -c %s "$W/t.tar.gz")," \
  "imgbuild-zstd $(du -b "$W"/b2/* | cut -f1 | head -1)"
