#!/usr/bin/env bash
# Warm-cache `imgbuild prepare descriptions/debian-minimal --profile bookworm` against
# `debootstrap --variant=minbase --cache-dir` and `mmdebstrap --variant=minbase` (merged-usr hook)
# of the same suite from the same mirror (the host's apt sources), alternating runs; then a
# cold-cache imgbuild run against the same peers. Prints the machine (cores, load before and after
# each table), then per tool wall-time and CPU-second medians, the ratio imgbuild/peer of each, and
# peak memory. The binary is built in $CARGO_TARGET_DIR (default target/); IMGBUILD_BIN overrides it.
#
# Usage: bench/prepare.sh [ROUNDS]   (as root; default 3 rounds)
set -euo pipefail

rounds=${1:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
suite=bookworm
[ "$(id -u)" = 0 ] || { echo "bench/prepare.sh needs root" >&2; exit 1; }

# The archive the host's apt sources name for the suite (never a name written here).
mirror=${IMGBUILD_APT_HOST_MIRROR:-$(
	python3 - "$suite" <<'EOF'
import glob, re, sys
suite = sys.argv[1]
entries = []
for f in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(f):
            line = line.split("#")[0].split()
            if len(line) >= 3 and line[0] == "deb":
                if line[1].startswith("["):
                    while not line[1].endswith("]"):
                        line.pop(1)
                    line.pop(1)
                entries.append((line[1], line[2:3]))
    except OSError:
        pass
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for para in re.split(r"\n\s*\n", open(f).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", para, re.M))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            for uri in fields.get("URIs", "").split():
                entries.append((uri, fields.get("Suites", "").split()))
main = [u for u, s in entries if any(x == suite for x in s)]
if not main:
    main = [u for u, s in entries if any("-security" not in x for x in s)]
if not main:
    sys.exit("no archive for " + suite + " in the host's apt sources")
print(main[0].rstrip("/"))
EOF
)}
echo "suite $suite, mirror from the host's apt sources: $mirror"

if [ -n "${IMGBUILD_BIN:-}" ]; then
	imgbuild=$IMGBUILD_BIN
else
	echo "building the release binary ..."
	(cd "$here" && cargo build --release --quiet --bin imgbuild)
	imgbuild=${CARGO_TARGET_DIR:-$here/target}/release/imgbuild
fi
load() { echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) ($1)"; }

work=$(mktemp -d /var/tmp/imgbuild-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/imgbuild-cache" "$work/debootstrap-cache"
desc=$here/descriptions/debian-minimal

prep="$imgbuild prepare $desc --profile $suite --no-lock --no-snapshot --root $work/out-imgbuild --cache-dir $work/imgbuild-cache"
deboot="debootstrap --variant=minbase --cache-dir=$work/debootstrap-cache $suite $work/out-debootstrap $mirror"
mmdeb="mmdebstrap --variant=minbase --quiet --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr $suite $work/out-mmdebstrap $mirror </dev/null"

echo "warming imgbuild's and debootstrap's caches ..."
$prep >/dev/null 2>&1
rm -rf "$work/out-imgbuild"
$deboot >/dev/null 2>&1
rm -rf "$work/out-debootstrap"

# Before each timed run: remove that tool's previous output (and, for the cold run, the cache).
setup='rm -rf '"$work"'/out-imgbuild '"$work"'/out-debootstrap '"$work"'/out-mmdebstrap '"$work"'/cold-cache'

echo
echo "== warm cache ($rounds rounds, alternating) =="
load "before"
python3 "$here/bench/alternate.py" --rounds "$rounds" --setup "$setup" \
	"imgbuild=$prep" \
	"debootstrap=$deboot" \
	"mmdebstrap=$mmdeb"
load "after"

echo
echo "== cold cache: imgbuild with a fresh --cache-dir every run ($rounds rounds, alternating) =="
load "before"
python3 "$here/bench/alternate.py" --rounds "$rounds" --setup "$setup" \
	"imgbuild-cold=$imgbuild prepare $desc --profile $suite --no-lock --no-snapshot --root $work/out-imgbuild --cache-dir $work/cold-cache" \
	"mmdebstrap=$mmdeb"
load "after"
