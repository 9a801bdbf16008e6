#!/bin/bash
# No-op rebuild: `imgbuild build descriptions/debian-minimal` a second time with nothing changed
# (package cache warm, result in place) must reuse the result, in under a second. Builds once
# (untimed; itself a no-op when the target is up to date), checks that the next build reuses the
# result, then times it with hyperfine. Prints the mean and whether it is under 1 s; exits non-zero if the
# rebuild is not a no-op.
#
# usage: bench/noop.sh          (needs root for the first build, and the host's Debian mirror)
# Environment: BIN (default target/release/imgbuild, built here), DESC (default
# descriptions/debian-minimal), CACHE (default target/bench-build-cache), TARGET (the result
# directory, default a fresh one under target/), RUNS (default 20), PROFILE.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
RUNS=${RUNS:-20}
command -v hyperfine >/dev/null || { echo "bench/noop.sh needs hyperfine" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin imgbuild >&2
  BIN=$repo/target/release/imgbuild
fi
DESC=${DESC:-$repo/descriptions/debian-minimal}
CACHE=${CACHE:-$repo/target/bench-build-cache}
if [ -z "${TARGET:-}" ]; then
  W=$(mktemp -d "$repo/target/bench-noop.XXXXXX")
  trap 'rm -rf "$W"' EXIT
  TARGET=$W/out
fi
profile_args=()
if [ -n "${PROFILE:-}" ]; then profile_args=(--profile "$PROFILE"); fi
cmd=("$BIN" build "$DESC" "${profile_args[@]}" --cache-dir "$CACHE" --target-dir "$TARGET")

# The untimed first build: a full one unless the target already holds an up-to-date result (a
# result of an imgbuild built from other source is not: the key names the source digest).
"${cmd[@]}" >/dev/null 2>"$TARGET.log" || { tail -n 20 "$TARGET.log" >&2; exit 1; }
log=$("${cmd[@]}" 2>&1 >/dev/null)
if ! grep -q 'up to date (inputs sha256:' <<<"$log"; then
  echo "the second build was not a no-op:" >&2
  echo "$log" >&2
  exit 1
fi
json=$(mktemp)
hyperfine --runs "$RUNS" --warmup 2 --style basic --export-json "$json" \
  -n "imgbuild no-op rebuild" "$(printf '%q ' "${cmd[@]}")" >&2
python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
mean, sd, n = r["mean"], r["stddev"] or 0.0, len(r["times"])
verdict = "under 1 s" if mean < 1.0 else "NOT under 1 s"
print(f"no-op rebuild: {mean:.3f} s ± {sd:.3f} s (min {r['min']:.3f}, max {r['max']:.3f}, {n} runs): {verdict}")
PY
rm -f "$json"
