#!/bin/bash
# rpm benchmark: the test fixture's zypper description (signed rpm-md repository built by the
# tests with rpmbuild and createrepo_c; bootstrap filesystem + busybox, image packages with
# scriptlets) built by `imgbuild build` (release binary, warm cache) against what KIWI does for
# it: `zypper --root` installing the same set from the same repository into a fresh root, then
# KIWI's packing path (umoci init/new/unpack, rsync of the root into the bundle, umoci repack,
# skopeo copy to a docker-archive). Alternating rounds; prints the machine load, the peer, the
# medians and the ratio.
#
# usage: bench/rpm.sh   (needs root; rpmbuild, createrepo_c, zypper, umoci, skopeo, rsync)
# Environment: ROUNDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
ROUNDS=${ROUNDS:-5}
[ "$(id -u)" = 0 ] || { echo "bench/rpm.sh needs root" >&2; exit 1; }
for t in cargo python3 zypper rpm umoci skopeo rsync; do
  command -v "$t" >/dev/null || { echo "bench/rpm.sh needs $t" >&2; exit 1; }
done
echo "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# The fixture repository the tests build (and keep in the target dir).
find_fixture() { ls -d "$repo"/target/tmp/rpm-repo-*/repo 2>/dev/null | head -1; }
if [ -z "$(find_fixture)" ]; then
  cargo test --test it rpm_fixture::every_rpm_is_signed_and_its_digests_check >&2
fi
FIX=$(find_fixture)
[ -n "$FIX" ] || { echo "the rpm fixture repository could not be built" >&2; exit 1; }
KEY=$(dirname "$FIX")/key.asc
cargo build --release --bin imgbuild >&2
BIN=$repo/target/release/imgbuild
W=$(mktemp -d "$repo/target/bench-rpm.XXXXXX")
trap 'rm -rf "$W"' EXIT
export IMGBUILD_STORAGE_ROOT=$W/store

BOOT="filesystem busybox"
IMAGE="with-scripts rich-a new-tool epoch-pkg"
mkdir -p "$W/desc"
{
  echo '<?xml version="1.0" encoding="utf-8"?>'
  echo '<image schemaversion="7.4" name="rpm-bench">'
  echo '  <description type="system"><author>b</author><contact>b@example.invalid</contact><specification>bench</specification></description>'
  echo '  <preferences><version>1.0.0</version><packagemanager>zypper</packagemanager><rpm-excludedocs>true</rpm-excludedocs>'
  echo '    <type image="docker"><containerconfig name="rpm-bench" tag="latest"/></type></preferences>'
  echo "  <repository type=\"rpm-md\" alias=\"fixture\"><source path=\"dir://$FIX\"><signing key=\"file://$KEY\"/></source></repository>"
  echo '  <packages type="bootstrap">'
  for p in $BOOT; do echo "    <package name=\"$p\"/>"; done
  echo '  </packages>'
  echo '  <packages type="image">'
  for p in $IMAGE; do echo "    <package name=\"$p\"/>"; done
  echo '  </packages>'
  echo '</image>'
} > "$W/desc/config.kiwi"

# The peer: zypper into a fresh root (rpm database where openSUSE keeps it), then KIWI's packing.
mkdir -p "$W/home"
echo "%_dbpath /usr/lib/sysimage/rpm" > "$W/home/.rpmmacros"
cat > "$W/peer.sh" <<PEER
set -e
export HOME=$W/home ZYPP_LOGFILE=$W/zypper.log
R=$W/peer-root O=$W/peer-out
rm -rf "\$R" "\$O"; mkdir -p "\$R/usr/lib/sysimage/rpm" "\$O"
rpm --root "\$R" --dbpath /usr/lib/sysimage/rpm --import $KEY 2>/dev/null
zypper --non-interactive --root "\$R" addrepo --gpgcheck dir://$FIX fixture >/dev/null
zypper --non-interactive --root "\$R" install --no-recommends $BOOT $IMAGE >/dev/null
umoci init --layout "\$O/oci"
umoci new --image "\$O/oci:latest"
umoci unpack --image "\$O/oci:latest" "\$O/bundle" >/dev/null
rsync -a --delete "\$R/" "\$O/bundle/rootfs/"
umoci repack --image "\$O/oci:latest" "\$O/bundle"
skopeo copy -q oci:"\$O/oci:latest" docker-archive:"\$O/image.tar":rpm-bench:latest
PEER

# Warm both (untimed): imgbuild's cache, and that the peer works here at all.
"$BIN" build "$W/desc" --no-lock --cache-dir "$W/cache" --target-dir "$W/warm" >/dev/null 2>"$W/warm.log" ||
  { tail -n 20 "$W/warm.log" >&2; exit 1; }
bash "$W/peer.sh" || { echo "the peer failed:"; tail -n 20 "$W/zypper.log" 2>/dev/null; exit 1; }
echo "imgbuild: $(ls "$W/warm" | grep 'docker.tar$') $(stat -c %s "$W"/warm/*.docker.tar) bytes;" \
  "peer: image.tar $(stat -c %s "$W/peer-out/image.tar") bytes"

echo
echo "== fixture image, warm, alternating ($ROUNDS rounds); ratio = imgbuild time / command time"
python3 bench/alternate.py --rounds "$ROUNDS" --setup "rm -rf $W/t" \
  "imgbuild=$BIN build $W/desc --no-lock --force --cache-dir $W/cache --target-dir $W/t" \
  "zypper+umoci=bash $W/peer.sh"
