#!/bin/bash
# Registry benchmark: `imgbuild push` of debian-minimal against `skopeo copy` of the same image
# to a docker-registry this script starts on loopback, alternating runs, every run to a fresh
# repository with no mount source (so every blob is really uploaded); then a no-change re-push
# (must be ≤ 0.2 s); then, when the binary has `pull`, `imgbuild pull` against `skopeo copy` into
# containers-storage (the same work: download, verify, unpack), and into an OCI directory (the
# download alone). Ratios are imgbuild / skopeo (≤ 0.8 is the goal).
#
# usage: bench/registry.sh [IMAGE]
#   IMAGE: an OCI layout directory, oci-archive or docker-archive of debian-minimal
#   [default: the OCI layout, else the docker-archive, of target/tmp/shared-minimal-build/out,
#   the integration tests' shared build]. A docker-archive (uncompressed layers) is first
#   copied by skopeo into a gzip OCI layout, so that neither tool compresses while timed.
# Environment: ROUNDS (default 5), IMGBUILD (the binary; default: a release build of this tree).
set -euo pipefail
cd "$(dirname "$0")/.."
for t in skopeo jq python3 /usr/bin/docker-registry; do
  command -v "$t" >/dev/null || { echo "registry.sh needs $t" >&2; exit 1; }
done
ROUNDS=${ROUNDS:-5}
if [ -z "${IMGBUILD:-}" ]; then
  cargo build --release --bin imgbuild >&2
  IMGBUILD=$PWD/target/release/imgbuild
fi
IMAGE=${1:-}
if [ -z "$IMAGE" ]; then
  out=target/tmp/shared-minimal-build/out
  IMAGE=$(ls -d "$out"/*.oci 2>/dev/null | head -1 || true)
  [ -n "$IMAGE" ] || IMAGE=$(ls "$out"/*.docker.tar 2>/dev/null | head -1 || true)
  [ -n "$IMAGE" ] || { echo "no IMAGE given and no shared debian-minimal build in $out" >&2; exit 1; }
fi
W=$(mktemp -d /var/tmp/imgbuild-bench-registry.XXXXXX)
export W
cleanup() {
  [ -s "$W/registry.pid" ] && kill "$(cat "$W/registry.pid")" 2>/dev/null
  [ -n "${W:-}" ] && [ -d "$W" ] && rm -rf "$W"
}
trap cleanup EXIT


case "$IMAGE" in
  *.docker.tar)
    skopeo copy -q --dest-compress --dest-compress-format gzip "docker-archive:$IMAGE" "oci:$W/layout:bench" >&2
    SRC=$W/layout ;;
  *) SRC=$IMAGE ;;
esac
if [ -d "$SRC" ]; then SKOPEO_SRC="oci:$SRC"; else SKOPEO_SRC="oci-archive:$SRC"; fi

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
export PORT
# (Re)starts the registry on empty storage. skopeo remembers where blobs were (its blob info
# cache) and would mount them from an earlier run's repository; on empty storage every blob is
# really uploaded. Untimed, before each timed push (exported for alternate.py's --setup).
reset_registry() {
  : "${W:?the work directory}"
  if [ -s "$W/registry.pid" ]; then
    local pid; pid=$(cat "$W/registry.pid")
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -rf "$W/data" "$W/st-push"
  setsid /usr/bin/docker-registry serve "$W/config.yml" >>"$W/registry.log" 2>&1 </dev/null &
  echo $! > "$W/registry.pid"
  for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "the registry did not start" >&2
  return 1
}
export -f reset_registry
reset_registry
HOST=127.0.0.1:$PORT
echo "image: $SRC ($(du -sh --apparent-size "$SRC" | cut -f1)), registry $HOST, $(nproc) cores, $ROUNDS rounds"

# Each timed push goes to an empty registry, imgbuild with an empty store root (no blob
# record): no blob is found by HEAD or mounted, everything is uploaded.
python3 bench/alternate.py --rounds "$ROUNDS" --setup reset_registry \
  "imgbuild-push=$IMGBUILD --storage-root $W/st-push push $SRC $HOST/bench/push:1 2>/dev/null" \
  "skopeo-copy=skopeo copy -q --dest-tls-verify=false $SKOPEO_SRC docker://$HOST/bench/push:1"

# No change: the same image to a repository that has it.
"$IMGBUILD" --storage-root "$W/st-re" push "$SRC" "$HOST/bench/repush:1" >/dev/null 2>&1
best=
for _ in 1 2 3 4 5; do
  s=$(date +%s.%N)
  "$IMGBUILD" --storage-root "$W/st-re" push "$SRC" "$HOST/bench/repush:1" >/dev/null 2>&1
  e=$(date +%s.%N)
  t=$(echo "$e - $s" | bc)
  if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
done
echo "no-change re-push: best of 5 $(printf %.3f "$best") s (goal ≤ 0.2 s)"

if "$IMGBUILD" pull --help >/dev/null 2>&1; then
  # A pull into a local store downloads, verifies and unpacks every layer: the peer doing the
  # same is skopeo copying into containers-storage (podman's store), both with the vfs driver.
  # Each store is removed and the page cache written back before every timed run, so no run
  # pays for the previous one's writeback. skopeo copying to an OCI directory (no unpacking) is
  # shown as well, for the cost of the download alone.
  echo
  echo "pull of $HOST/bench/repush:1 (vfs stores, written back between runs)"
  CS="containers-storage:[vfs@$W/cs-root+$W/cs-run]"
  python3 bench/alternate.py --rounds "$ROUNDS" \
    --setup "rm -rf $W/pull-st $W/pull-oci $W/cs-root $W/cs-run && sync" \
    "imgbuild-pull=$IMGBUILD --storage-root $W/pull-st --storage-driver vfs pull -q --tls-verify=false $HOST/bench/repush:1" \
    "skopeo-to-containers-storage=skopeo copy -q --src-tls-verify=false docker://$HOST/bench/repush:1 ${CS}bench/repush:1" \
    "skopeo-to-oci-dir=skopeo copy -q --src-tls-verify=false docker://$HOST/bench/repush:1 oci:$W/pull-oci:1"
else
  echo "imgbuild pull: not in this binary, skipped"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
