#!/bin/bash
# Registry cache benchmark: `imgbuild build descriptions/debian-minimal --cache-from` on a
# "fresh machine" (no target, an empty package cache, its own store) that finds the result in a
# docker-registry on loopback, against a warm local build of the same description (`--force`:
# package cache and package-stage snapshot warm, so it unpacks no package but packs the image).
# Both in one hyperfine run; prints wall and CPU (user+sys) means and the ratios hit / local
# (goal ≤ 0.2). Each timed hit is checked to be a hit (the log names the registry cache).
#
# usage: bench/registry-cache.sh          (needs root and the host's Debian mirror)
# Environment: BIN (default: a release build of this tree), CACHE (the warm package cache,
# default target/bench-build-cache), PROFILE (default: the description's default, trixie),
# RUNS (hyperfine runs of each, default 10). Callable from another bench (bench/multiarch.sh):
# it prints one summary line starting "registry cache:".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
RUNS=${RUNS:-10}
[ "$(id -u)" = 0 ] || { echo "bench/registry-cache.sh needs root" >&2; exit 1; }
for t in hyperfine python3 curl /usr/bin/docker-registry; do
  command -v "$t" >/dev/null || { echo "bench/registry-cache.sh needs $t" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin imgbuild >&2
  BIN=$repo/target/release/imgbuild
fi
DESC=$repo/descriptions/debian-minimal
CACHE=${CACHE:-$repo/target/bench-build-cache}
profile_args=()
if [ -n "${PROFILE:-}" ]; then profile_args=(--profile "$PROFILE"); fi
mkdir -p "$repo/target"
W=$(mktemp -d "$repo/target/bench-registry-cache.XXXXXX")
cleanup() {
  [ -s "$W/registry.pid" ] && kill "$(cat "$W/registry.pid")" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/data
http:
  addr: 127.0.0.1:$PORT
  secret: bench
EOF
setsid /usr/bin/docker-registry serve "$W/config.yml" >>"$W/registry.log" 2>&1 </dev/null &
echo $! > "$W/registry.pid"
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break
  sleep 0.05
done
REF=docker://127.0.0.1:$PORT/bench/cache
echo "registry cache $REF, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# Untimed: the build that stores the result (and warms the snapshot of the package stage).
"$BIN" build "$DESC" "${profile_args[@]}" --cache-dir "$CACHE" --target-dir "$W/stored" \
  --cache-to "$REF" >/dev/null 2>"$W/stored.log" || { tail -n 20 "$W/stored.log" >&2; exit 1; }
grep -q 'stored in the registry cache' "$W/stored.log" || { cat "$W/stored.log" >&2; exit 1; }
echo "result: $(du -sh --apparent-size "$W/stored" | cut -f1) in $(ls "$W/stored" | wc -l) files"

# A hit runs on a fresh "machine": no target, an empty package cache, a store of its own.
hit="rm -rf $W/hit $W/hit-cache $W/hit-store && mkdir $W/hit-cache && \
IMGBUILD_STORAGE_ROOT=$W/hit-store $BIN build $DESC ${profile_args[*]} --cache-dir $W/hit-cache \
--target-dir $W/hit --cache-from $REF 2>$W/hit.log && grep -q 'from the registry cache' $W/hit.log"
local_build="$BIN build $DESC ${profile_args[*]} --force --cache-dir $CACHE --target-dir $W/local 2>/dev/null"
bash -c "$hit" >/dev/null || { cat "$W/hit.log" >&2; exit 1; }
python3 - "$W/hit/result.json" "$W/stored/result.json" <<'PY' || exit 1
import json, sys
def files(p):
    # kiwi.result.json names the target by absolute path: it is written for each target.
    return [f for f in json.load(open(p))["files"] if f["kind"] != "kiwi-result"]
if files(sys.argv[1]) != files(sys.argv[2]):
    sys.exit("the hit's files differ from the stored result's")
PY

json=$W/hyperfine.json
hyperfine --runs "$RUNS" --warmup 1 --style basic --export-json "$json" \
  -n "cache hit from the registry" "$hit" \
  -n "warm local build (--force)" "$local_build" >&2
python3 - "$json" <<'PY'
import json, sys
hit, local = json.load(open(sys.argv[1]))["results"]
def cpu(r):
    # hyperfine's JSON holds the mean user and system times of the runs.
    return r["user"] + r["system"]
wall = hit["mean"] / local["mean"]
c = cpu(hit) / cpu(local)
print(f"cache hit: {hit['mean']:.3f} s ± {hit['stddev'] or 0:.3f} wall, {cpu(hit):.3f} s CPU")
print(f"warm local build: {local['mean']:.3f} s ± {local['stddev'] or 0:.3f} wall, {cpu(local):.3f} s CPU")
verdict = "meets" if max(wall, c) <= 0.2 else "MISSES"
print(f"registry cache: hit / warm local build = {wall:.3f}× wall, {c:.3f}× CPU ({verdict} ≤ 0.2×)")
PY
