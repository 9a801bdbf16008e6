#!/bin/bash
# End-to-end build benchmark: `imgbuild build descriptions/debian-minimal` (release binary, warm
# package cache) against KIWI itself (`kiwi-ng --type docker system build`) building the same
# description from the same mirror, alternating runs; then KIWI with its outer compression off
# (runtime config `container: compress: false`), a no-op rebuild of imgbuild (bench/noop.sh),
# and the packing-only comparison of bench/pack.sh. Prints the tables and ratios.
#
# usage: bench/build.sh          (needs root; kiwi-ng, debootstrap, rsync, umoci, skopeo for KIWI)
# Environment: ROUNDS (default 3), KIWI_WARM=0 to skip KIWI's untimed warm-up build, PROFILE (default: the description's default, trixie),
# CACHE (imgbuild's package cache, default target/bench-build-cache), SKIP_PACK=1 to skip pack.sh,
# NOOP_RUNS (hyperfine runs of the no-op rebuild, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "bench/build.sh needs root" >&2; exit 1; }
for t in cargo python3; do
  command -v "$t" >/dev/null || { echo "bench/build.sh needs $t" >&2; exit 1; }
done

# The host's Debian archive (never written into the repository): the first deb822 `URIs:` or
# one-line `deb` entry of /etc/apt/sources.list{,.d/*} that serves Debian's main archive.
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}';
           cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
             awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }') |
         grep -v -- '-security' | grep '/debian/\?$' | head -1 || true)
[ -n "$mirror" ] || { echo "no Debian archive in the host's apt sources" >&2; exit 1; }
suite=trixie
profile_args=()
if [ -n "${PROFILE:-}" ]; then suite=$PROFILE; profile_args=(--profile "$PROFILE"); fi
echo "mirror: $mirror ($suite), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release --bin imgbuild >&2
BIN=$repo/target/release/imgbuild
DESC=$repo/descriptions/debian-minimal
CACHE=${CACHE:-$repo/target/bench-build-cache}
W=$(mktemp -d "$repo/target/bench-build.XXXXXX")
trap 'rm -rf "$W"' EXIT
export IMGBUILD_STORAGE_ROOT=$W/store

# Warm imgbuild's cache (untimed).
"$BIN" build "$DESC" "${profile_args[@]}" --cache-dir "$CACHE" --target-dir "$W/warm" >/dev/null 2>"$W/warm.log" ||
  { tail -n 20 "$W/warm.log" >&2; exit 1; }
echo "imgbuild result: $(ls "$W/warm" | tr '\n' ' ')"
# Timed builds are fresh builds: the target is removed before each run, and --force would build
# even if it were not, so no timed run can reuse a result; --no-snapshot installs the packages
# each time (bench/edit.sh times the rebuild that restores the package-stage snapshot).
imgbuild_cmd="$BIN build $DESC ${profile_args[*]} --force --no-snapshot --cache-dir $CACHE --target-dir $W/t-imgbuild"

# No-op rebuild: a second build into the warm result with everything cached and nothing changed
# (hyperfine, RUNS runs).
noop=$(BIN=$BIN DESC=$DESC CACHE=$CACHE TARGET=$W/warm RUNS=${NOOP_RUNS:-20} bash bench/noop.sh 2>"$W/noop.log") ||
  noop="failed: $(tail -n 5 "$W/noop.log")"

# KIWI: the same description, the host mirror via --set-repo (KIWI's tuple:
# source,type,alias,priority,imageinclude,package_gpgcheck,{keys},components,distribution,repo_gpgcheck).
kiwi_ok=0
kiwi_cmds=()
if command -v kiwi-ng >/dev/null; then
  # KIWI reads a bare path in the key list relative to its own prefix: give a file:// URI.
  keys=file:///usr/share/keyrings/debian-archive-keyring.gpg
  setrepo="$mirror,apt-deb,$suite,,,,{$keys},main,$suite,true"
  printf 'container:\n  compress: false\n' > "$W/kiwi-nocompress.yml"
  kiwi_base="kiwi-ng --logfile $W/kiwi.log --type docker ${PROFILE:+--profile $PROFILE}"
  kiwi_cmd="$kiwi_base system build --description $DESC --target-dir $W/t-kiwi --set-repo '$setrepo'"
  kiwi_nc="kiwi-ng --logfile $W/kiwi-nc.log --config $W/kiwi-nocompress.yml --type docker ${PROFILE:+--profile $PROFILE} system build --description $DESC --target-dir $W/t-kiwi-nc --set-repo '$setrepo'"
  # One untimed KIWI build warms its package cache and shows whether KIWI can build it at all
  # (KIWI_WARM=0 skips it when KIWI has built it here before).
  if [ "${KIWI_WARM:-1}" = 0 ] || bash -c "$kiwi_cmd" >"$W/kiwi-warm.out" 2>&1; then
    kiwi_ok=1
    if [ -d "$W/t-kiwi" ]; then echo "KIWI result: $(ls "$W/t-kiwi" | grep -v '^build$' | tr '\n' ' ')"; fi
    kiwi_cmds=("kiwi=$kiwi_cmd" "kiwi-nocomp=$kiwi_nc")
  else
    echo "KIWI could not build $DESC (log tail below); timing imgbuild alone"
    tail -n 15 "$W/kiwi.log" 2>/dev/null || tail -n 15 "$W/kiwi-warm.out"
  fi
else
  echo "kiwi-ng not installed (pip install kiwi); timing imgbuild alone"
fi

echo
echo "== end to end, warm cache, alternating ($ROUNDS rounds); ratio = imgbuild time / command time"
python3 bench/alternate.py --rounds "$ROUNDS" \
  --setup "rm -rf $W/t-imgbuild $W/t-kiwi $W/t-kiwi-nc $W/kiwi.log $W/kiwi-nc.log" \
  "imgbuild=$imgbuild_cmd" "${kiwi_cmds[@]}"
echo
echo "== no-op rebuild (second imgbuild build, everything cached, hyperfine)"
echo "$noop"
if [ -z "${SKIP_PACK:-}" ]; then
  echo
  echo "== packing only (bench/pack.sh)"
  bash bench/pack.sh
fi
[ "$kiwi_ok" = 1 ] || echo "note: KIWI could not build the description here; see the log tail above"
