#!/usr/bin/env bash
# What the hardened build sandbox (seccomp, device cgroup, cgroup namespace, masked /proc,
# reduced capabilities) costs `imgbuild prepare`: the current tree against the last revision
# before the hardening, same description, same warm package cache, alternating runs with
# hyperfine. Prints both medians and the ratio (target: at most 1.03).
#
# Usage: bench/harden.sh [ROUNDS] [DESCRIPTION]   (as root; default 5 rounds, debian-rich)
set -euo pipefail

rounds=${1:-5}
desc=${2:-descriptions/debian-rich}
base_rev=${BASE_REV:-fa2e42f}
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "bench/harden.sh needs root" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "bench/harden.sh needs hyperfine" >&2; exit 1; }

work=$(mktemp -d /var/tmp/imgbuild-bench-harden.XXXXXX)
cleanup() {
  set +e
  git -C "$repo" worktree remove --force "$work/base-src" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building imgbuild (release): current tree and $base_rev"
(cd "$repo" && cargo build --release --quiet)
git -C "$repo" worktree add --detach "$work/base-src" "$base_rev" >/dev/null
(cd "$work/base-src" && CARGO_TARGET_DIR="$repo/target/bench-base" cargo build --release --quiet)
new="$repo/target/release/imgbuild"
old="$repo/target/bench-base/release/imgbuild"

echo "== warming the package cache"
"$new" prepare "$repo/$desc" --root "$work/warm" --cache-dir "$work/cache" >/dev/null
rm -rf "$work/warm"

hyperfine --runs "$rounds" --warmup 1 --export-json "$work/h.json" \
  --prepare "rm -rf $work/root" \
  -n hardened "$new prepare $repo/$desc --root $work/root --cache-dir $work/cache -q" \
  -n before "$old prepare $repo/$desc --root $work/root --cache-dir $work/cache -q"
python3 - "$work/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
h, b = r["hardened"]["median"], r["before"]["median"]
print(f"prepare median: hardened {h:.2f} s, before {b:.2f} s, ratio {h / b:.3f} (target <= 1.03)")
PY
