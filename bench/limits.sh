#!/usr/bin/env bash
# The physical limits of each stage of a warm debian-minimal build, measured on this machine with
# the plain tools that do the same work (docs/performance.md explains each row):
#   sha256  sha256sum over the cached .debs (what verifying the download reads)
#   xz-d    decompressing every data.tar.xz, one stream at a time (the CPU floor of unpacking)
#   tar-x   extracting the decompressed tars into a fresh directory (the file-creation floor)
#   tar-c   archiving the prepared root and hashing the tar (packing an uncompressed layer)
#   gzip    deflating that tar with pigz on every core (packing a gzip layer)
#   copy    copying the layer and hashing the copy (the floor of writing the archive)
# The maintainer scripts' floor is measured per process with perf sched (docs/performance.md).
# Prints CPU seconds (user + system) and wall seconds per row, and the machine load.
#
# Usage: bench/limits.sh CACHE_DIR ROOT   (ROOT: a prepared root, e.g. `imgbuild prepare --root`)
set -euo pipefail
cache=$(realpath "${1:?cache dir}")
root=$(realpath "${2:?prepared root}")
W=$(mktemp -d /var/tmp/imgbuild-limits.XXXXXX)
trap 'rm -rf "$W"' EXIT
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# The cached .debs: the blobs that are ar archives.
mkdir "$W/debs"
for f in "$cache"/blobs/sha256/*; do
	if [ "$(head -c 7 "$f" | tr -d '\0')" = '!<arch>' ]; then ln -s "$f" "$W/debs/$(basename "$f").deb"; fi
done
echo "$(ls "$W/debs" | wc -l) cached .debs, $(du -cLsh "$W/debs" | tail -1 | cut -f1)"

t() { # NAME COMMAND...: CPU (user+sys) and wall of the command, children included
	local name=$1
	shift
	/usr/bin/time -f "$name %U %S %e" -o "$W/time" "$@" >/dev/null
	awk '{printf "%-8s cpu %6.2f s  wall %6.2f s\n", $1, $2 + $3, $4}' "$W/time"
}

t sha256 sh -c "cat $W/debs/*.deb | sha256sum"
mkdir "$W/tars"
for d in "$W"/debs/*.deb; do
	m=$(ar t "$d" | grep '^data\.tar')
	case $m in
	*.xz) ar p "$d" "$m" | xz -dc >"$W/tars/$(basename "$d").tar" ;;
	*.zst) ar p "$d" "$m" | zstd -dc >"$W/tars/$(basename "$d").tar" ;;
	*.gz) ar p "$d" "$m" | gzip -dc >"$W/tars/$(basename "$d").tar" ;;
	*) ar p "$d" "$m" >"$W/tars/$(basename "$d").tar" ;;
	esac
done
echo "data: $(du -csh "$W/tars" | tail -1 | cut -f1) of tar"
t xz-d sh -c "for d in $W/debs/*.deb; do ar p \$d \$(ar t \$d | grep '^data\\.tar') | xz -dc -T1 >/dev/null; done"
mkdir "$W/x"
t tar-x sh -c "for f in $W/tars/*.tar; do tar -xf \$f -C $W/x; done"
t tar-c sh -c "tar -C $root --numeric-owner --xattrs -cf $W/layer.tar . && sha256sum $W/layer.tar"
echo "layer: $(du -h "$W/layer.tar" | cut -f1)"
t gzip sh -c "pigz -6 -p $(nproc) -c $W/layer.tar"
t copy sh -c "cp $W/layer.tar $W/copy.tar && sha256sum $W/copy.tar"
