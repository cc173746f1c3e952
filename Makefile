# Benchmarks and tuning. Plain targets; see docs/PERFORMANCE.md for what each
# figure means and tuning/run --help for the tuner.
#
#   make bench        criterion benches (each benches/*.rs registered in Cargo.toml),
#                     the R benchmarks (benches/r/*.R) and the figures (docs/img/)
#   make bench-rust   only the criterion benches
#   make bench-r      only the R benchmarks + figures (installs the R package into $(R_LIB))
#   make figures      only redraw docs/img/ from benches/r/results/*.csv
#   make tune         tuning/run (quick, < 3 min): sweep the allocator's knobs, write the
#                     profile ($SHARD_PROFILE, else ~/.config/shard/profile) and tuning/report/
#   make tune-full    tuning/run --full
#
# Variables: SAMPLES (criterion sample size, 10), R_LIB (where the R package is
# installed for the benchmarks, target/r-lib), HUGEPAGES (2 MiB pages reserved for
# the criterion benches when run as root, restored after; 64), TUNE_ARGS (extra
# arguments for tuning/run, e.g. TUNE_ARGS="--no-profile --hugepages 300").
# The R scripts take SHARD_BENCH_* environment variables (see their headers), e.g.
#   make bench-r SHARD_BENCH_MAX_BYTES=64M SHARD_BENCH_MAX_COUNT=10000

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
SAMPLES ?= 10
R_LIB ?= $(CURDIR)/target/r-lib
HUGEPAGES ?= 64
TUNE_ARGS ?=
RSCRIPT = R_LIBS=$(R_LIB) Rscript

.PHONY: help bench bench-rust bench-r r-lib tune-bin figures tune tune-full

help:
	@awk '/^#/ { sub(/^# ?/, ""); print; next } { exit }' Makefile

bench: bench-rust bench-r

# Every benches/*.rs that Cargo.toml registers as a [[bench]]; others are listed and skipped.
bench-rust:
	@hp=/proc/sys/vm/nr_hugepages; old=$$(cat $$hp); \
	if [ -w $$hp ] && [ "$$old" -lt "$(HUGEPAGES)" ]; then \
	  trap 'echo "$$old" > '$$hp'; echo "nr_hugepages restored to $$old"' EXIT; \
	  echo "$(HUGEPAGES)" > $$hp; echo "nr_hugepages $$old -> $$(cat $$hp) for the benches"; fi; \
	for f in benches/*.rs; do b=$$(basename $$f .rs); \
	  if grep -q "^name = \"$$b\"" Cargo.toml; then \
	    echo "== cargo bench --bench $$b"; cargo bench --bench $$b -- --sample-size $(SAMPLES) || exit 1; \
	  else echo "== $$b: not registered as a [[bench]] in Cargo.toml, skipped"; fi; \
	done

r-lib:
	bash scripts/install-r-pkg.sh $(R_LIB)

tune-bin:
	cargo build --release --quiet -p shard-tuning

# compare.R and scaling.R reserve their own huge pages (SHARD_BENCH_HUGEPAGES) and restore them.
bench-r: r-lib tune-bin
	$(RSCRIPT) benches/r/compare.R
	$(RSCRIPT) benches/r/scaling.R
	@if [ -f benches/r/pool_memory.R ]; then echo "== benches/r/pool_memory.R"; $(RSCRIPT) benches/r/pool_memory.R; fi
	$(MAKE) figures

figures:
	Rscript benches/r/plots.R benches/r/results docs/img

tune:
	tuning/run $(TUNE_ARGS)

tune-full:
	tuning/run --full $(TUNE_ARGS)
