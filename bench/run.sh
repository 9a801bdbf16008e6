#!/bin/bash
# Container start benchmarks for `imgbuild run` (needs root, crun, podman, the Debian mirror).
#
# 1. `imgbuild run --rm IMAGE /bin/true` (overlay) against `crun run` of a bundle unpacked from the
#    same image and `podman run --rm --network=none` of the same image (imported with
#    `podman import` into a temp --root/--runroot), alternating; ratio = imgbuild / peer.
# 2. Container start against image size: a ~10 MB and a ~1 GB image, with overlay and with vfs
#    (vfs copies the whole image per container, so its cost grows with size).
# 3. A web server's life: `run -d -p 127.0.0.1:PORT:80` of busybox httpd until the first HTTP 200
#    from the host, against `podman run -d -p` of the same image; then `exec CONTAINER /bin/true`
#    against `podman exec` into the running server.
#
# Environment: ROUNDS (default 20) for part 1, SIZE_ROUNDS (default 5) for part 2,
# BIG_MB (default 1024), SMALL_MB (default 8) of filler on top of busybox.
set -euo pipefail

ROUNDS=${ROUNDS:-20}
SIZE_ROUNDS=${SIZE_ROUNDS:-5}
BIG_MB=${BIG_MB:-1024}
SMALL_MB=${SMALL_MB:-8}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root" >&2; exit 1; }
for tool in crun podman apt-get dpkg-deb python3; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool" >&2; exit 1; }
done

quirks=""
for q in "$repo/../shared/scripts/host-quirks.sh" "$repo/../../shared/scripts/host-quirks.sh"; do
  if [ -x "$q" ]; then quirks=$("$q"); break; fi
done

work=$(mktemp -d /var/tmp/imgbuild-bench-run.XXXXXX)
podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --storage-driver overlay
        --cgroup-manager cgroupfs --events-backend none)
cleanup() {
  set +e
  "${podman[@]}" rm -af >/dev/null 2>&1
  "${podman[@]}" rmi -af >/dev/null 2>&1
  crun list -q 2>/dev/null | grep '^imgbuild-bench-' | xargs -r -n1 crun delete -f >/dev/null 2>&1
  # Unmount whatever is still mounted below the work dir (podman's store, a failed run).
  grep -o " $work[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building imgbuild (release)"
(cd "$repo" && cargo build --release --quiet)
imgbuild="$repo/target/release/imgbuild"

echo "== busybox root tree"
mkdir -p "$work/dl"
(cd "$work/dl" && apt-get download -q busybox-static >/dev/null)
small="$work/small"
dpkg-deb -x "$work"/dl/busybox-static_*.deb "$small"
for applet in $("$small/bin/busybox" --list); do
  [ -e "$small/bin/$applet" ] || ln -s busybox "$small/bin/$applet"
done
mkdir -p "$small"/{etc,proc,sys,dev,tmp,root}
chmod 1777 "$small/tmp"
mkdir -p "$small/www"
echo "bench page" > "$small/www/index.html"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$small/etc/passwd"
printf 'root:x:0:\n' > "$small/etc/group"
touch "$small/etc/hosts" "$small/etc/hostname" "$small/etc/resolv.conf"
# Filler so the sizes are what part 2 says: 1 MiB files of random data.
filler() { # DIR MB
  mkdir -p "$1/filler"
  for i in $(seq 1 "$2"); do head -c 1048576 /dev/urandom > "$1/filler/f$i"; done
}
big="$work/big"
cp -a "$small" "$big"
filler "$small" "$SMALL_MB"
filler "$big" "$BIG_MB"
du -sh "$small" "$big"

# An OCI layout of a tree as one uncompressed layer, made once per tree (a layout directory is
# loaded in place, so a 1 GB image is not copied again to be read).
layout() { # ROOTFS -> prints the layout dir
  local d="$work/layout-$(basename "$1")"
  if [ ! -f "$d/index.json" ]; then
    mkdir -p "$d/blobs/sha256"
    tar -C "$1" --numeric-owner --sort=name -cf "$d/layer.tar" .
    local lhex lsize chex csize mhex msize arch
    lhex=$(sha256sum "$d/layer.tar" | cut -d' ' -f1); lsize=$(stat -c %s "$d/layer.tar")
    mv "$d/layer.tar" "$d/blobs/sha256/$lhex"
    arch=$(dpkg --print-architecture)
    printf '{"architecture":"%s","os":"linux","config":{"Cmd":["/bin/sh"],"Env":["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
      "$arch" "$lhex" > "$d/config"
    chex=$(sha256sum "$d/config" | cut -d' ' -f1); csize=$(stat -c %s "$d/config")
    mv "$d/config" "$d/blobs/sha256/$chex"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
      "$chex" "$csize" "$lhex" "$lsize" > "$d/manifest"
    mhex=$(sha256sum "$d/manifest" | cut -d' ' -f1); msize=$(stat -c %s "$d/manifest")
    mv "$d/manifest" "$d/blobs/sha256/$mhex"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$d/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s}]}' \
      "$mhex" "$msize" > "$d/index.json"
  fi
  echo "$d"
}
load() { # STORE DRIVER ROOTFS TAG
  "$imgbuild" --storage-root "$1" --storage-driver "$2" load --tag "$4" "$(layout "$3")" \
    || { echo "loading $3 failed" >&2; exit 1; }
}
echo "== loading the images into overlay and vfs stores"
load "$work/store-overlay" overlay "$small" bench/small
load "$work/store-overlay" overlay "$big" bench/big
load "$work/store-vfs" vfs "$small" bench/small
load "$work/store-vfs" vfs "$big" bench/big

echo "== crun bundle (the same tree, Docker's default capabilities, seccomp and device control on)"
seccomp_profile=/usr/share/containers/seccomp.json
[ -f "$seccomp_profile" ] || { echo "bench/run.sh needs $seccomp_profile (podman's containers-common)" >&2; exit 1; }
bundle="$work/bundle"
mkdir -p "$bundle"
cp -a "$small" "$bundle/rootfs"
(cd "$bundle" && crun spec)
python3 - "$bundle/config.json" "$seccomp_profile" <<'EOF'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT",
        "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
for s in ("bounding", "effective", "permitted"):
    c["process"]["capabilities"][s] = caps
c["root"] = {"path": "rootfs", "readonly": False}
# The seccomp profile engines hand crun (the containers' default profile this host ships),
# resolved for these capabilities and this architecture, as podman does before calling crun.
import platform
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
prof = json.load(open(sys.argv[2]))
rules = []
for s in prof["syscalls"]:
    inc, exc = s.get("includes") or {}, s.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= set(caps):
        continue
    if exc.get("caps") and set(exc["caps"]) & set(caps):
        continue
    if inc.get("arches") and arch not in inc["arches"]:
        continue
    if exc.get("arches") and arch in exc["arches"]:
        continue
    r = {"names": s["names"], "action": s["action"]}
    for k in ("args", "errnoRet"):
        if s.get(k):
            r[k] = s[k]
    rules.append(r)
c["linux"]["seccomp"] = {"defaultAction": prof["defaultAction"],
                         "defaultErrnoRet": prof.get("defaultErrnoRet", 1),
                         "syscalls": rules}
assert any(d.get("allow") is False for d in c["linux"]["resources"]["devices"]), "device control"
json.dump(c, open(p, "w"))
EOF

echo "== podman image (podman import of the same tree)"
tar -C "$small" -cf "$work/small.tar" .
"${podman[@]}" import -q "$work/small.tar" localhost/bench/small >/dev/null

echo "== sanity"
"$imgbuild" --storage-root "$work/store-overlay" run --rm bench/small /bin/true
crun run -b "$bundle" "imgbuild-bench-check-$$"
crun delete -f "imgbuild-bench-check-$$" >/dev/null 2>&1 || true
# shellcheck disable=SC2086
"${podman[@]}" run --rm --network=none $quirks localhost/bench/small /bin/true

echo
echo "== part 1: start and stop a container running /bin/true ($ROUNDS rounds; ratio = imgbuild/peer)"
# crun keeps a stopped container's state after `run` only when it fails; the id must be unique.
python3 "$here/alternate.py" --rounds "$ROUNDS" \
  "imgbuild=$imgbuild --storage-root $work/store-overlay run --rm bench/small /bin/true" \
  "crun=crun run -b $bundle imgbuild-bench-\$\$-\$RANDOM" \
  "podman=${podman[*]} run --rm --network=none $quirks localhost/bench/small /bin/true"

echo
echo "== part 2: container start against image size ($SIZE_ROUNDS rounds; ratio = overlay-small/command)"
python3 "$here/alternate.py" --rounds "$SIZE_ROUNDS" \
  "overlay-10M=$imgbuild --storage-root $work/store-overlay run --rm bench/small /bin/true" \
  "overlay-1G=$imgbuild --storage-root $work/store-overlay run --rm bench/big /bin/true" \
  "vfs-10M=$imgbuild --storage-root $work/store-vfs run --rm bench/small /bin/true" \
  "vfs-1G=$imgbuild --storage-root $work/store-vfs run --rm bench/big /bin/true"

echo
echo "== part 3: a web server: run -d -p to the first HTTP 200, then exec ($ROUNDS rounds; ratio = imgbuild/podman)"
port=18080
web() { # how the server runs in both: busybox httpd in the foreground on port 80
  echo "bench/small httpd -f -p 80 -h /www"
}
wait200="until curl -fs -o /dev/null http://127.0.0.1:$port/; do :; done"
store="$work/store-overlay"
# shellcheck disable=SC2086
python3 "$here/alternate.py" --rounds "$ROUNDS" \
  --setup "$imgbuild --storage-root $store rm -f benchweb >/dev/null 2>&1; ${podman[*]} rm -f -t 0 benchweb >/dev/null 2>&1; true" \
  "imgbuild=$imgbuild --storage-root $store run -d --name benchweb -p 127.0.0.1:$port:80 $(web) && $wait200" \
  "podman=${podman[*]} run -d --name benchweb $quirks -p 127.0.0.1:$port:80 localhost/$(web) && $wait200"
"$imgbuild" --storage-root "$store" rm -f benchweb >/dev/null 2>&1 || true
"${podman[@]}" rm -f -t 0 benchweb >/dev/null 2>&1 || true

"$imgbuild" --storage-root "$store" run -d --name benchexec bench/small sleep 3600 >/dev/null
# shellcheck disable=SC2086
"${podman[@]}" run -d --name benchexec --network=none $quirks localhost/bench/small sleep 3600 >/dev/null
python3 "$here/alternate.py" --rounds "$ROUNDS" \
  "imgbuild=$imgbuild --storage-root $store exec benchexec /bin/true" \
  "podman=${podman[*]} exec benchexec /bin/true"
"$imgbuild" --storage-root "$store" rm -f benchexec >/dev/null
"${podman[@]}" rm -f -t 0 benchexec >/dev/null
