#!/usr/bin/env bash
# Time `imgbuild validate` over KIWI's whole test-description corpus (release build).
# Usage: bench/validate-corpus.sh [CORPUS_DIR]   (default: $IMGBUILD_KIWI_CORPUS or ../shared/corpus/kiwi-testdata)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-${IMGBUILD_KIWI_CORPUS:-}}
if [ -z "$corpus" ]; then
  for c in ../shared/corpus/kiwi-testdata ../../shared/corpus/kiwi-testdata; do
    if [ -d "$c" ]; then corpus=$c; break; fi
  done
fi
if [ -z "$corpus" ] || [ ! -d "$corpus" ]; then echo "SKIP: corpus $corpus not found" >&2; exit 0; fi
cargo build --release --quiet
mapfile -t files < <(find "$corpus" \( -name '*.xml' -o -name '*.kiwi' \) | sort)
echo "validating ${#files[@]} descriptions from $corpus"
# validate exits 1 because the corpus holds deliberate negative cases; that is expected here
cmd="target/release/imgbuild validate ${files[*]} >/dev/null 2>&1 || true"
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 2 --runs 10 --shell=bash -n "imgbuild validate (${#files[@]} files)" "$cmd"
else
  time bash -c "$cmd"
fi
