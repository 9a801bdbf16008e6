#!/bin/bash
# Packing benchmark: one layer of a root tree written by imgbuild's layer writer against
# `tar --sort=name -c | gzip -6` and `umoci insert`, with hyperfine, alternating in one run.
# Prints the machine load, the peers' versions, the wall and CPU ratios and the blob sizes.
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
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/image_pack
W=$(mktemp -d /tmp/imgbuild-pack.XXXXXX)
trap 'rm -rf "$W"' EXIT
# umoci needs a layout with an image to insert into.
umoci init --layout "$W/layout" >&2
umoci new --image "$W/layout:base" >&2

echo "tree: $ROOT ($(du -sh --apparent-size "$ROOT" | cut -f1), $(nproc) cores)"
echo "peers: $(umoci --version), $(gzip --version | head -1), $(tar --version | head -1)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$W/result.json" \
  -n imgbuild-gzip "rm -rf $W/b1; $BIN $ROOT $W/b1 gzip" \
  -n imgbuild-zstd "rm -rf $W/b2; $BIN $ROOT $W/b2 zstd" \
  -n tar-gzip6 "tar --sort=name -C $ROOT -c . | gzip -6 > $W/t.tar.gz" \
  -n umoci-insert "umoci insert --image $W/layout:base --tag t $ROOT / >/dev/null && umoci gc --layout $W/layout"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Wall and CPU time (user+system) per command and the ratios; CPU ratios stay meaningful
# when other jobs share the cores.
jq -r '.results[] | "\(.command): wall \(.mean * 1000 | round) ms, cpu \((.user + .system) * 1000 | round) ms"' \
  "$W/result.json"
jq -r '.results | map({(.command): {wall: .mean, cpu: (.user + .system)}}) | add as $r |
  def ratio(a; b; k): ($r[a][k] / $r[b][k] * 1000 | round / 1000);
  "ratio imgbuild-gzip / umoci-insert: wall \(ratio("imgbuild-gzip"; "umoci-insert"; "wall")), cpu \(ratio("imgbuild-gzip"; "umoci-insert"; "cpu"))",
  "ratio imgbuild-gzip / tar|gzip-6:   wall \(ratio("imgbuild-gzip"; "tar-gzip6"; "wall")), cpu \(ratio("imgbuild-gzip"; "tar-gzip6"; "cpu"))",
  "ratio imgbuild-zstd / umoci-insert: wall \(ratio("imgbuild-zstd"; "umoci-insert"; "wall")), cpu \(ratio("imgbuild-zstd"; "umoci-insert"; "cpu"))",
  "ratio imgbuild-zstd / tar|gzip-6:   wall \(ratio("imgbuild-zstd"; "tar-gzip6"; "wall")), cpu \(ratio("imgbuild-zstd"; "tar-gzip6"; "cpu"))"' \
  "$W/result.json"
# Blob sizes: each output directory holds one blob; umoci's layer is its layout's largest blob.
size() { find "$@" -type f -printf '%s\n' | sort -n | tail -1; }
gz=$(size "$W/b1") umoci=$(size "$W/layout/blobs/sha256")
echo "sizes (bytes): imgbuild-gzip $gz, umoci-insert $umoci, tar|gzip-6 $(stat -c %s "$W/t.tar.gz")," \
  "imgbuild-zstd $(size "$W/b2")"
echo "size ratio imgbuild-gzip / umoci-insert: $(awk -v a="$gz" -v b="$umoci" 'BEGIN { printf "%.4f", a / b }')"
