#!/usr/bin/env bash
# R 4.5 (Debian trixie) in a chroot, for checking the package on current R.
#
#   bash scripts/r45-chroot.sh setup                 make or update the chroot
#   bash scripts/r45-chroot.sh check TARBALL OUTDIR  R CMD check --as-cran TARBALL, then
#                                                    install it and run the testthat suite
#   bash scripts/r45-chroot.sh run CMD...            run a command inside (debugging)
#
# The chroot is made once with mmdebstrap from the Debian mirror this machine's
# apt already uses (read from /etc/apt/sources.list*: nothing else is needed or
# reachable) and cached under $SHARD_R45_CACHE (default /var/cache/shard-r45),
# which later runs reuse; a changed package list is installed into the cached
# chroot instead of rebuilding it. The host's Rust toolchain (rustc --print
# sysroot) is bind-mounted read-only at /opt/rust, so the chroot builds the
# package's Rust code with the same compiler as the host and needs no rustup or
# network. Every mount lives in a private mount namespace (unshare -m) and goes
# away with it, so an interrupted run leaves no mount behind.
#
# Needs root and mmdebstrap (scripts/setup.sh installs it). Exit status of
# `check`: 0 when R CMD check has no ERROR/WARNING and the testthat suite has no
# failure, 1 otherwise; OUTDIR gets check.txt, 00check.log, testthat.txt and
# noncompliant.txt (the non-API entry points R reported, one per line).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SHARD_R45_CACHE:-/var/cache/shard-r45}"
root="$cache/root"
suite=trixie

# Everything the package's check, vignettes and tests use. Changing this list
# makes the next run install the difference into the cached chroot.
debs=(r-base-dev r-cran-testthat r-cran-callr r-cran-ps r-cran-foreach r-cran-doparallel
      r-cran-future r-cran-future.apply r-cran-furrr r-bioc-biocparallel r-cran-bigmemory
      r-cran-bench r-cran-progress r-cran-withr r-cran-cli r-cran-knitr r-cran-rmarkdown
      r-cran-processx r-cran-rmpi r-cran-snow pandoc tidy qpdf devscripts xz-utils numactl util-linux mount passwd procps
      ca-certificates)

mirror() {
  # The first Debian archive URI apt is configured with (deb822 or one-line).
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
      grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

setup() {
  [ "$(id -u)" = 0 ] || { echo "r45-chroot: needs root (chroot, mounts)" >&2; exit 1; }
  command -v mmdebstrap >/dev/null || { echo "r45-chroot: mmdebstrap missing: apt-get install mmdebstrap (scripts/setup.sh does)" >&2; exit 1; }
  mkdir -p "$cache"
  local want stamp="$root/etc/shard-r45.list"
  want=$(printf '%s\n' "${debs[@]}" | sort)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "r45-chroot: cached chroot $root is current"
    return
  fi
  if [ ! -x "$root/usr/bin/R" ]; then
    local m; m=$(mirror)
    echo "r45-chroot: creating the Debian $suite chroot in $root from $m (one time: several minutes)"
    rm -rf "$root.new"
    local inc; inc=$(IFS=,; echo "${debs[*]}")
    mmdebstrap --variant=apt --mode=root --quiet \
      --aptopt='Acquire::Retries "3"' --aptopt='APT::Install-Recommends "false"' \
      --include="$inc" "$suite" "$root.new" "deb $m $suite main"
    rm -rf "$root"; mv "$root.new" "$root"
  else
    echo "r45-chroot: installing the changed package list into $root"
    in_root sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${debs[*]} >/dev/null"
  fi
  # The second user of the cross-user tests (SHARD_TEST_OTHER_USER), same uid as on the host.
  if id shardtest >/dev/null 2>&1 && ! grep -q '^shardtest:' "$root/etc/passwd"; then
    in_root useradd -M -u "$(id -u shardtest)" -s /usr/sbin/nologin shardtest
  fi
  echo "$want" > "$stamp"
  in_root R --version | head -n1
}

# Runs a command in the chroot with /proc, /sys, /dev, the host's Rust toolchain
# (/opt/rust) and $SHARD_R45_WORK (/work) mounted, in a mount namespace of its own.
in_root() {
  local sysroot; sysroot=$(rustc --print sysroot 2>/dev/null || true)
  [ -n "$sysroot" ] || { echo "r45-chroot: rustc not found on the host (scripts/setup.sh installs Rust)" >&2; exit 1; }
  mkdir -p "$root/opt/rust" "$root/work"
  unshare -m --propagation private bash -s -- "$root" "$sysroot" "${SHARD_R45_WORK:-}" "$@" <<'EOF'
set -e
r=$1 sys=$2 work=$3; shift 3
# The chroot's / a mount point of its own, so that tests may unshare -m inside.
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
mount --rbind /dev "$r/dev"
mount --bind "$sys" "$r/opt/rust"; mount -o remount,bind,ro "$r/opt/rust"
[ -z "$work" ] || mount --bind "$work" "$r/work"
cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
exec chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
  PATH=/opt/rust/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
  SHARD_TEST_OTHER_USER="${SHARD_TEST_OTHER_USER:-}" SHARD_TEST_SYSCTL="${SHARD_TEST_SYSCTL:-}" \
  PROCESSX_NOTIFY_OLD_SIGCHLD=true MAKEFLAGS="${MAKEFLAGS:--j2}" "$@"
EOF
}

check() {
  local tarball=$1 out=$2
  [ -f "$tarball" ] || { echo "r45-chroot: no tarball $tarball" >&2; exit 1; }
  setup
  mkdir -p "$out"
  local work; work=$(mktemp -d "$cache/work.XXXXXX")
  chmod 755 "$work"   # the cross-user tests run R as another user on this library
  trap 'rm -rf "$work"' RETURN
  local tb; tb=$(basename "$tarball")
  cp "$tarball" "$work/$tb"
  cp -R "$here/../r-ext/tests/testthat" "$work/testthat"
  cp "$here/testthat-summary.R" "$work/"
  SHARD_R45_WORK="$work" in_root bash -c '
    set -u; cd /work; tb=$1
    echo "R: $(R --version | head -n1)"; echo "rustc: $(rustc --version)"
    # --as-cran without the checks that need the network (CRAN incoming,
    # URL and timestamp checks) or LaTeX (the PDF manual). Tests run below,
    # against the installed package, through the suite runner.
    export _R_CHECK_CRAN_INCOMING_REMOTE_=false _R_CHECK_CRAN_INCOMING_=false \
           _R_CHECK_FUTURE_FILE_TIMESTAMPS_=false _R_CHECK_SYSTEM_CLOCK_=false _R_CHECK_FORCE_SUGGESTS_=true
    R CMD check --as-cran --no-manual --no-tests "$tb" > check.txt 2>&1; echo "check exit: $?" >> check.txt
    # The suite runs against the package R CMD check installed (saves a
    # second Rust build); if the check could not install it, install it here.
    lib=/work/shard.Rcheck
    if [ ! -f shard.Rcheck/shard/DESCRIPTION ]; then
      lib=/work/lib; mkdir -p lib
      R CMD INSTALL -l lib "$tb" > install.txt 2>&1 || { echo "INSTALL failed"; tail -n 40 install.txt; }
    fi
    R_LIBS=$lib Rscript testthat-summary.R testthat > testthat.txt 2>&1; echo "testthat exit: $?" >> testthat.txt
  ' r45 "$tb" || true
  cp "$work/check.txt" "$work/install.txt" "$work/testthat.txt" "$out/" 2>/dev/null || true
  cp "$work"/shard.Rcheck/00check.log "$out/" 2>/dev/null || true
  cp "$work"/shard.Rcheck/00install.out "$out/" 2>/dev/null || true
  # Non-API entry points: R >= 4.5 lists them under "checking compiled code".
  sed -n '/^\* checking compiled code/,/^\* /p' "$out/00check.log" 2>/dev/null | sed "s/[‘’]/'/g" |
    awk '/Found non-API calls? to R:/ { on = 1 } on && /^ *$/ { on = 0 } on' |
    grep -oE "'[A-Za-z_][A-Za-z_0-9]*'" | tr -d "'" | sort -u > "$out/noncompliant.txt" || true
  grep -E "^\* |WARNING|ERROR|NOTE|^Status" "$out/check.txt" | grep -vE "\.\.\. OK$" || true
  if [ -s "$out/noncompliant.txt" ]; then
    echo "R 4.5 NON-API ENTRY POINTS (R CMD check --as-cran): $(tr '\n' ' ' < "$out/noncompliant.txt")"
    # Where the package's C sources use them (file:line).
    local src="$work/shard.Rcheck/00_pkg_src/shard/src" n
    while read -r n; do
      echo "  $n: $(cd "$src" 2>/dev/null && grep -nwo "$n" -- *.c *.h 2>/dev/null | cut -d: -f1,2 | tr '\n' ' ')"
    done < "$out/noncompliant.txt" | tee "$out/noncompliant-where.txt"
  fi
  tail -n 3 "$out/testthat.txt" || true
  # One summary line for run-tests.sh: the testthat counts, plus the check
  # itself as one more passed (no ERROR/WARNING) or failed test.
  local ok=0 check_ok=1 tp tf ts
  if grep -q "^Status: .*\(ERROR\|WARNING\)" "$out/check.txt" || ! grep -q "^Status:" "$out/check.txt"; then
    check_ok=0; ok=1
    echo "R 4.5 CHECK FAILED: $(grep "^Status:" "$out/check.txt" || echo "no status (see check.txt)")"
    sed -n '/WARNING$\|ERROR$/,/^\* /p' "$out/00check.log" 2>/dev/null | head -n 60
  fi
  read -r tp tf ts < <(sed -n 's/^testthat: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1 \2 \3/p' "$out/testthat.txt" | tail -n1)
  [ -n "${tp:-}" ] || { tp=0 tf=1 ts=0; echo "R 4.5 testthat: no summary line (crash?)"; }
  [ "$tf" = 0 ] || ok=1
  echo "r45: $((tp + check_ok)) passed, $((tf + 1 - check_ok)) failed, $ts skipped"
  return $ok
}

case "${1:-}" in
  setup) setup ;;
  check) shift; check "$@" ;;
  run) shift; setup >/dev/null; in_root "$@" ;;
  *) echo "usage: $0 setup | check TARBALL OUTDIR | run CMD..." >&2; exit 2 ;;
esac
