#!/bin/bash
# Peak memory of a warm-cache build: `imgbuild build descriptions/debian-minimal --force --no-snapshot` (release
# binary, warm package cache, a temporary target directory) against `mmdebstrap --variant=minbase`
# of the same suite (trixie, as the description) from the same mirror (the host's apt sources).
# Peak RSS is the largest resident set of the command or any process it waited for (getrusage
# of the children, as `/usr/bin/time -v` reports it). Alternating rounds; prints each run, the
# medians, the ratio imgbuild/mmdebstrap and the machine load.
#
# usage: bench/memory.sh   (needs root and the host's Debian mirror; mmdebstrap)
# Environment: ROUNDS (default 3), CACHE (imgbuild's package cache, default
# target/bench-build-cache; warmed by an untimed first build).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
ROUNDS=${ROUNDS:-3}
suite=trixie
[ "$(id -u)" = 0 ] || { echo "bench/memory.sh needs root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "bench/memory.sh needs mmdebstrap" >&2; exit 1; }
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}';
           cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
             awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }') |
         grep -v -- '-security' | grep '/debian/\?$' | head -1 || true)
[ -n "$mirror" ] || { echo "no Debian archive in the host's apt sources" >&2; exit 1; }

cargo build --release --bin imgbuild >&2
BIN=${CARGO_TARGET_DIR:-$repo/target}/release/imgbuild
CACHE=${CACHE:-$repo/target/bench-build-cache}
W=$(mktemp -d /var/tmp/imgbuild-bench-memory.XXXXXX)
trap 'rm -rf "$W"' EXIT
export IMGBUILD_STORAGE_ROOT=$W/store

build="$BIN build descriptions/debian-minimal --force --no-snapshot --cache-dir $CACHE --target-dir $W/out"
mmdeb="mmdebstrap --variant=minbase --quiet $suite $W/mmdebstrap.tar $mirror </dev/null"
# Untimed: fills the cache (packages, and the packed index) so every timed build is warm.
$build >/dev/null 2>"$W/warm.log" || { tail -n 20 "$W/warm.log" >&2; exit 1; }

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "mirror: $mirror ($suite), $(nproc) cores, load before: $(load)"
python3 - "$ROUNDS" "$W" "$build" "$mmdeb" <<'EOF'
import os, statistics, subprocess, sys
rounds, work = int(sys.argv[1]), sys.argv[2]
cmds = [("imgbuild", sys.argv[3]), ("mmdebstrap", sys.argv[4])]
peaks = {n: [] for n, _ in cmds}
cpu = {n: [] for n, _ in cmds}
for r in range(rounds):
    for name, cmd in cmds[r % 2:] + cmds[:r % 2]:
        subprocess.run(["rm", "-rf", f"{work}/out", f"{work}/mmdebstrap.tar"], check=True)
        proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        err = proc.stderr.read().decode(errors="replace")
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{name} failed: {cmd}\n{err[-2000:]}")
        peaks[name].append(usage.ru_maxrss / 1024.0)
        cpu[name].append(usage.ru_utime + usage.ru_stime)
        print(f"round {r + 1}: {name:<10} peak RSS {peaks[name][-1]:7.1f} MB  cpu {cpu[name][-1]:6.2f} s", flush=True)
print()
med = {n: statistics.median(v) for n, v in peaks.items()}
for name, _ in cmds:
    print(f"{name:<10} median peak RSS {med[name]:7.1f} MB  (min {min(peaks[name]):.1f}, max {max(peaks[name]):.1f}); median cpu {statistics.median(cpu[name]):.2f} s")
print(f"ratio imgbuild/mmdebstrap peak RSS: {med['imgbuild'] / med['mmdebstrap']:.2f}")
EOF
echo "load after: $(load)"
