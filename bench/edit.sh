#!/bin/bash
# The edit-rebuild loop: a producer edits config.sh of descriptions/debian-minimal and builds
# again. imgbuild rebuilds into its previous result (warm package cache, release binary) after
# each edit; the peer is KIWI building the same edited description (it has no incremental
# build). Alternating rounds, each preceded by a fresh config.sh edit (untimed); prints the
# machine load, the medians and the ratio.
#
# usage: bench/edit.sh   (needs root, the host's Debian mirror; kiwi-ng, debootstrap, umoci, skopeo for KIWI)
# Environment: ROUNDS (default 3), NO_KIWI=1 to time imgbuild alone.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "bench/edit.sh needs root" >&2; exit 1; }
mirror=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}';
           cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
             awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }') |
         grep -v -- '-security' | grep '/debian/\?$' | head -1 || true)
[ -n "$mirror" ] || { echo "no Debian archive in the host's apt sources" >&2; exit 1; }
echo "mirror: $mirror (trixie), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

cargo build --release --bin imgbuild >&2
BIN=$repo/target/release/imgbuild
CACHE=${CACHE:-$repo/target/bench-build-cache}
W=$(mktemp -d "$repo/target/bench-edit.XXXXXX")
trap 'rm -rf "$W"' EXIT
export IMGBUILD_STORAGE_ROOT=$W/store
cp -a descriptions/debian-minimal "$W/desc"
[ -f "$W/desc/config.sh" ] || printf '#!/bin/bash\nset -e\n' > "$W/desc/config.sh"
chmod +x "$W/desc/config.sh"
# The edit: one more line in config.sh, different every time (untimed, before each command).
edit="echo \"echo edit-\$RANDOM-\$RANDOM > /etc/bench-edit\" >> $W/desc/config.sh"

"$BIN" build "$W/desc" --cache-dir "$CACHE" --target-dir "$W/out" >/dev/null 2>"$W/warm.log" ||
  { tail -n 20 "$W/warm.log" >&2; exit 1; }
cmds=("imgbuild-edit=$BIN build $W/desc --cache-dir $CACHE --target-dir $W/out")
if [ -z "${NO_KIWI:-}" ] && command -v kiwi-ng >/dev/null; then
  keys=file:///usr/share/keyrings/debian-archive-keyring.gpg
  setrepo="$mirror,apt-deb,trixie,,,,{$keys},main,trixie,true"
  kiwi_cmd="kiwi-ng --logfile $W/kiwi.log --type docker system build --description $W/desc --target-dir $W/t-kiwi --set-repo '$setrepo'"
  if bash -c "$kiwi_cmd" >"$W/kiwi-warm.out" 2>&1; then
    cmds+=("kiwi=$kiwi_cmd")
  else
    echo "KIWI could not build the description here; timing imgbuild alone"
  fi
fi
echo
echo "== rebuild after a config.sh edit, alternating ($ROUNDS rounds); ratio = imgbuild time / command time"
python3 bench/alternate.py --rounds "$ROUNDS" --setup "$edit; rm -rf $W/t-kiwi $W/kiwi.log" "${cmds[@]}"
