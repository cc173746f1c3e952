#!/usr/bin/env bash
# Installs what shard needs on a fresh Debian machine (as root): R and the R
# packages the tests and benchmarks use (from Debian, CRAN is not needed), and
# the Rust tools (rustfmt, clippy, cbindgen). Idempotent: skips what is there.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

debs=(r-base-dev r-cran-testthat r-cran-callr r-cran-ps r-cran-foreach r-cran-doparallel
      r-cran-future r-cran-bigmemory r-cran-bench r-cran-progress r-cran-cli numactl util-linux
      passwd procps
      # interop tests (test-interop.R), vignettes (R CMD build), the R 4.5 chroot
      # (scripts/r45-chroot.sh) and the vendored crates (tools/vendor-rust.sh)
      r-cran-future.apply r-cran-furrr r-bioc-biocparallel r-cran-processx r-cran-withr
      r-cran-knitr r-cran-rmarkdown pandoc mmdebstrap xz-utils
      # R CMD check --as-cran needs checkbashisms (devscripts) and qpdf
      devscripts qpdf)
# Installs the Debian packages named that are not installed yet; $1 says what for.
install_debs() {
  local what=$1; shift
  local need=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${what}${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}
install_debs "" "${debs[@]}"

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; installing Rust with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! command -v cbindgen >/dev/null; then
  echo "setup: installing cbindgen"
  cargo install cbindgen --locked --quiet
fi

# --- clusters (pretend nodes, MPI, Slurm): scripts/nodes/, tests/nodes/ -------------
# Owned by the clusters work (issue 16); kept apart from the list above so that the two
# can be merged by hand. SHARD_SETUP_NODES=0 leaves it out.
setup_nodes() {
  local node_debs=(openmpi-bin libopenmpi-dev r-cran-rmpi r-cran-snow slurmctld slurmd
                   slurm-client munge r-cran-batchtools r-cran-future.batchtools iproute2)
  install_debs "(clusters) " "${node_debs[@]}"
  # The Debian packages start munge/slurm services where an init system runs; the
  # scenarios run their own daemons (scripts/nodes/slurm-cluster.sh), so stop none here.
}
if [ "${SHARD_SETUP_NODES:-1}" = 1 ]; then setup_nodes; fi
