#!/usr/bin/env bash
# Times the packaging steps of scripts/run-tests.sh one by one, as run there:
# R CMD build without and with the vignettes, R CMD check on this machine's R,
# the offline install check, and the R 4.5 chroot step. Prints one line per step
# with its wall time and the load average when it started (the development VM is
# shared; figures taken under load are slower).
#
#   bash scripts/time-packaging.sh           warm: reuses the cached R 4.5 chroot
#   bash scripts/time-packaging.sh --cold    makes a new chroot in a temporary cache
#                                            (deleted afterwards) for the R 4.5 step
# Needs root (unshare, chroot). Used for the figures in README.md and
# docs/PERFORMANCE.md ("Packaging steps").
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH" PROCESSX_NOTIFY_OLD_SIGCHLD=true
work=$(mktemp -d)
cold_cache=""
trap 'rm -rf "$work" ${cold_cache:+"$cold_cache"}' EXIT
results=()
step() {  # step NAME COMMAND...
  local name=$1 load t0 rc; shift
  load=$(cut -d' ' -f1 /proc/loadavg); t0=$(date +%s.%N)
  "$@" >"$work/$name.log" 2>&1; rc=$?
  results+=("$(printf '%-28s %7.1f s  (load %s, exit %d)' "$name" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$load" "$rc")")
  echo "${results[-1]}"
}
(cd r-ext && sh tools/vendor-rust.sh >/dev/null)
mkdir -p "$work/novig" "$work/vig" "$work/check"
step build-no-vignettes bash -c "cd '$work/novig' && R CMD build --no-build-vignettes '$root/r-ext'"
step build-vignettes bash -c "cd '$work/vig' && R CMD build '$root/r-ext'"
tarball=$(ls "$work"/vig/shard_*.tar.gz)
step check-host-R bash -c "cd '$work/check' && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual --no-tests '$tarball'"
step offline-install bash scripts/offline-install.sh "$tarball" r-ext
if [ "${1:-}" = --cold ]; then
  cold_cache=$(mktemp -d /var/cache/shard-r45-cold.XXXXXX)
  step r45-cold env SHARD_R45_CACHE="$cold_cache" bash scripts/r45-chroot.sh check "$tarball" "$work/r45"
else
  step r45-warm bash scripts/r45-chroot.sh check "$tarball" "$work/r45"
fi
echo "--- $(nproc) CPUs, $(R --version | head -n1)"
printf '%s\n' "${results[@]}"
grep -h "^offline-install:\|^installed size:\|^r45:\|^Status:" "$work"/*.log || true
