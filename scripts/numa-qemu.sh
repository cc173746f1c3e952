#!/usr/bin/env bash
# Runs the allocator's NUMA tests (and the smoke, sealing and huge-page tests) on
# a real multi-node kernel: a qemu guest with 2 NUMA nodes, then one with 4.
#
#   bash scripts/numa-qemu.sh
#
# What it does (see docs/NUMA.md):
#  1. installs what it needs if missing (Debian, as root): qemu-system-x86,
#     busybox-static, cpio; downloads the Debian kernel package linux-image-amd64
#     and takes only its vmlinuz (apt-get download + dpkg-deb, nothing installed,
#     /boot untouched; cached under $CARGO_TARGET_DIR/numa-qemu/);
#  2. builds the test binaries (cargo test -p shard-alloc --no-run);
#  3. packs an initramfs: busybox, the test binaries, their shared libraries and
#     an /init that mounts proc/sysfs/devtmpfs/tmpfs/hugetlbfs, reserves 2 MiB huge
#     pages on every node, runs each binary with --test-threads=1 between
#     BEGIN/END markers and powers off;
#  4. boots it with qemu-system-x86_64 -enable-kvm (TCG, slower, if KVM is not
#     usable; said loudly), -smp 4 -m 4G, 2 nodes and then 4 nodes;
#  5. parses the guest's console: the libtest summary of every binary.
#
# Last line: `numa-qemu: N passed, M failed, K skipped`. Exit 0 if nothing failed
# and every boot reached its END marker; 1 otherwise. A `SKIPPED:` line from the
# numa tests inside a guest counts as a failure (the guest has the nodes), as
# does a binary that exits non-zero. If qemu cannot run at all:
# `numa-qemu: SKIPPED: <reason>` and exit 77.
#
# Environment: NUMA_QEMU_NODES (default "2 4": the node counts to boot),
# NUMA_QEMU_TESTS (default "numa smoke sealing hugepages"), NUMA_QEMU_KERNEL (a
# vmlinuz to use instead of downloading), NUMA_QEMU_TIMEOUT (seconds per boot;
# default 240 with KVM, 600 with TCG), NUMA_QEMU_ACCEL=kvm|tcg (skip the KVM
# probe; by default KVM if /dev/kvm is usable, else TCG), NUMA_QEMU_KEEP=1 (keep
# the work dir), NUMA_QEMU_ARGS (extra libtest arguments for every binary in
# the guest, one word, e.g. --include-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
NODES_LIST=${NUMA_QEMU_NODES:-"2 4"}
TESTS=${NUMA_QEMU_TESTS:-"numa smoke sealing hugepages"}
START=$(date +%s)

say() { echo "numa-qemu: $*"; }
skip_all() {
	echo
	echo "numa-qemu: SKIPPED: $*"
	echo
	exit 77
}

WORK=$(mktemp -d /tmp/numa-qemu.XXXXXX)
QEMU_PID=
cleanup() {
	if [ -n "$QEMU_PID" ]; then kill "$QEMU_PID" 2>/dev/null || true; fi
	if [ "${NUMA_QEMU_KEEP:-0}" = 1 ]; then
		say "work dir kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# --- 1. tools --------------------------------------------------------------
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
# The static busybox: the guest has no libc of its own besides what we copy.
if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then
	need_pkgs+=(busybox-static)
fi
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v gzip >/dev/null || need_pkgs+=(gzip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		skip_all "missing ${need_pkgs[*]} and cannot install them (needs root and apt-get)"
	fi
	say "installing ${need_pkgs[*]}"
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"; } >"$WORK/apt.log" 2>&1; then
		tail -20 "$WORK/apt.log"
		skip_all "could not install ${need_pkgs[*]} (apt-get failed, log above)"
	fi
fi
BUSYBOX=/bin/busybox

# The kernel: only vmlinuz out of the Debian package, never installed.
KERNEL=${NUMA_QEMU_KERNEL:-}
if [ -z "$KERNEL" ]; then
	CACHE="$CARGO_TARGET_DIR/numa-qemu"
	mkdir -p "$CACHE"
	KERNEL=$(ls -1 "$CACHE"/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
	if [ -z "$KERNEL" ]; then
		command -v apt-get >/dev/null || skip_all "no kernel: apt-get missing and NUMA_QEMU_KERNEL unset"
		say "downloading the Debian kernel (linux-image-amd64) for its vmlinuz"
		(
			cd "$WORK"
			chmod 755 "$WORK"
			apt-get download linux-image-amd64 >/dev/null 2>&1 ||
				{ apt-get update -qq >/dev/null 2>&1 && apt-get download linux-image-amd64 >/dev/null 2>&1; }
			dep=$(dpkg-deb -f linux-image-amd64_*.deb Depends | tr ',' '\n' |
				sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
			[ -n "$dep" ] || exit 1
			apt-get download "$dep" >/dev/null 2>&1
			dpkg-deb --fsys-tarfile "$dep"_*.deb | tar -x --wildcards './boot/vmlinuz-*'
		) || skip_all "could not download the Debian kernel package (apt-get download linux-image-amd64)"
		k=$(ls -1 "$WORK"/boot/vmlinuz-* | head -1)
		cp "$k" "$CACHE/"
		KERNEL="$CACHE/$(basename "$k")"
		rm -rf "$WORK"/boot "$WORK"/*.deb
	fi
fi
[ -r "$KERNEL" ] || skip_all "kernel $KERNEL not readable"
say "kernel image: $KERNEL"

# --- 2. test binaries ------------------------------------------------------
say "building the allocator's test binaries (cargo test -p shard-alloc --no-run)"
cargo test -p shard-alloc --no-run --message-format=json >"$WORK/build.json" 2>"$WORK/build.err" || {
	tail -30 "$WORK/build.err"
	say "build failed"
	say "0 passed, 1 failed, 0 skipped"
	exit 1
}
declare -A BIN=()
while read -r name exe; do
	BIN[$name]=$exe
done < <(grep '"reason":"compiler-artifact"' "$WORK/build.json" | grep '"kind":\["test"\]' |
	sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p')
for t in $TESTS; do
	[ -n "${BIN[$t]:-}" ] || { say "no test binary named $t in the build output"; exit 1; }
done

# --- 3. initramfs ----------------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,tests,etc,root}
cp "$BUSYBOX" "$R/bin/busybox"
for t in $TESTS; do
	# Debug info is most of a test binary; the guest needs none of it.
	if command -v strip >/dev/null; then
		strip --strip-debug -o "$R/tests/$t" "${BIN[$t]}"
	else
		cp "${BIN[$t]}" "$R/tests/$t"
	fi
	# Shared libraries (libc, libgcc_s, ...) and the dynamic loader, at their paths.
	ldd "${BIN[$t]}" | grep -o '/[^ ]*' | while read -r lib; do
		[ -e "$R$lib" ] || cp -L --parents "$lib" "$R/"
	done
done
# usrmerge: /lib64 and /lib may be symlinks into /usr on the host.
for d in lib lib64; do
	if [ -L "/$d" ] && [ ! -e "$R/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; fi
done
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"
cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm /dev/hugepages
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mount -t hugetlbfs hugetlbfs /dev/hugepages
# shmem THP on request (Debian's default is never), so the allocator's THP
# fallback runs here too; the guest is thrown away, nothing to restore.
thp=/sys/kernel/mm/transparent_hugepage/shmem_enabled
[ -w $thp ] && echo advise > $thp
nodes=$(ls -d /sys/devices/system/node/node[0-9]* | wc -l)
# 64 reserved 2 MiB pages in all, spread evenly over the nodes.
for d in /sys/devices/system/node/node[0-9]*/hugepages/hugepages-2048kB; do
  echo $((64 / nodes)) > "$d/nr_hugepages"
done
echo
echo "NUMA-QEMU: kernel $(uname -r)"
echo "NUMA-QEMU: shmem THP: $(cat $thp 2>/dev/null || echo n/a)"
echo "NUMA-QEMU: nodes with memory $(cat /sys/devices/system/node/has_memory), cpus $(nproc)"
for n in /sys/devices/system/node/node[0-9]*; do
  echo "NUMA-QEMU: $(basename $n): cpus $(cat $n/cpulist), $(grep MemTotal $n/meminfo | sed 's/.*MemTotal: *//'), 2M pages $(cat $n/hugepages/hugepages-2048kB/nr_hugepages)"
done
export SHARD_EXPECT_NUMA_NODES=$(cat /proc/cmdline | sed -n 's/.*numa_qemu_nodes=\([0-9]*\).*/\1/p')
echo "NUMA-QEMU: BEGIN"
cd /tmp
for t in /tests/*; do
  name=$(basename $t)
  echo "NUMA-QEMU: RUN $name"
  $t --test-threads=1 $NUMA_QEMU_ARGS 2>&1
  echo "NUMA-QEMU: EXIT $name $?"
done
echo "NUMA-QEMU: END"
poweroff -f
EOF
chmod 755 "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"
say "initramfs: $(du -h "$WORK/initrd.gz" | cut -f1) ($TESTS)"

# --- 4. boot ---------------------------------------------------------------
ACCEL=tcg
if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then ACCEL=kvm; fi
case ${NUMA_QEMU_ACCEL:-} in
kvm | tcg) ACCEL=$NUMA_QEMU_ACCEL ;;
"") [ "$ACCEL" = kvm ] || say "WARNING: /dev/kvm is not usable: TCG (software emulation, several times slower)" ;;
*) say "NUMA_QEMU_ACCEL must be kvm or tcg"; exit 1 ;;
esac

boot() { # boot <nodes> <accel> <log>; returns 2 if KVM started but never ran /init
	local n=$1 accel=$2 log=$3 per=$((4096 / $1)) numa=() i cpus pid t0
	for ((i = 0; i < n; i++)); do
		cpus=$((i * 4 / n))-$(((i + 1) * 4 / n - 1))
		numa+=(-object "memory-backend-ram,id=m$i,size=${per}M"
			-numa "node,nodeid=$i,cpus=$cpus,memdev=m$i")
	done
	local cpu=(-cpu max) limit=${NUMA_QEMU_TIMEOUT:-600}
	# arch-capabilities=off: nested KVM hosts often refuse that MSR (qemu aborts).
	if [ "$accel" = kvm ]; then cpu=(-enable-kvm -cpu host,arch-capabilities=off); limit=${NUMA_QEMU_TIMEOUT:-240}; fi
	timeout -k 5 "$limit" qemu-system-x86_64 "${cpu[@]}" \
		-nographic -no-reboot -nic none \
		-smp 4 -m 4G "${numa[@]}" \
		-kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet numa_qemu_nodes=$n NUMA_QEMU_ARGS=${NUMA_QEMU_ARGS:-}" \
		</dev/null >"$log.raw" 2>&1 &
	pid=$!
	QEMU_PID=$pid
	t0=$(date +%s)
	local rc=0
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		# With KVM the guest's /init speaks within seconds. Some nested-KVM hosts
		# (e.g. a microVM exposing /dev/kvm) hang the guest kernel right after the
		# decompressor: give up on KVM after 40 s of silence.
		if [ "$accel" = kvm ] && [ $(($(date +%s) - t0)) -ge 40 ] &&
			! grep -q 'NUMA-QEMU: kernel' "$log.raw"; then
			kill "$pid" 2>/dev/null || true
			rc=2
			break
		fi
	done
	wait "$pid" 2>/dev/null || true
	QEMU_PID=
	# Serial console: CRLF line ends and the BIOS's terminal escapes.
	local esc=$'\033'
	tr -d '\r' <"$log.raw" | sed "s/$esc\[[0-9;?]*[a-zA-Z]//g; s/${esc}c//g" >"$log"
	rm -f "$log.raw"
	return $rc
}

# --- 5. parse --------------------------------------------------------------
PASSED=0 FAILED=0 SKIPPED=0
parse() { # parse <nodes> <log>: adds to the totals, prints a line per binary
	local n=$1 log=$2
	if ! grep -q '^NUMA-QEMU: END' "$log"; then
		say "$n nodes: the guest did not reach its END marker (crash, hang or timeout); last lines:"
		tail -25 "$log" | sed 's/^/    /'
		FAILED=$((FAILED + 1))
	fi
	local name rc p f ig sk summary
	while read -r name rc; do
		# The binary's own summary is its last `test result:` line (a failing test
		# may quote a child process's output, summary included).
		summary=$(sed -n "/^NUMA-QEMU: RUN $name\$/,/^NUMA-QEMU: EXIT $name /p" "$log" |
			grep 'test result:' | tail -1 || true)
		p=$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$summary")
		f=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$summary")
		ig=$(sed -n 's/.* \([0-9]*\) ignored.*/\1/p' <<<"$summary")
		p=${p:-0} f=${f:-0} ig=${ig:-0}
		sk=$(sed -n "/^NUMA-QEMU: RUN $name\$/,/^NUMA-QEMU: EXIT $name /p" "$log" | grep -c 'SKIPPED:' || true)
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi # crashed, or no summary
		if [ "$name" = numa ] && [ "$sk" -gt 0 ]; then
			say "$n nodes: numa: $sk SKIPPED line(s) in a guest that has the nodes: counted as failures"
			f=$((f + sk)) sk=0
		fi
		PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + sk + ig))
		say "$n nodes: $name: exit $rc, $p passed, $f failed, $((sk + ig)) skipped"
	done < <(sed -n 's/^NUMA-QEMU: EXIT \([^ ]*\) \([0-9]*\)$/\1 \2/p' "$log")
	for t in $TESTS; do
		grep -q "^NUMA-QEMU: EXIT $t " "$log" || { say "$n nodes: $t did not finish"; FAILED=$((FAILED + 1)); }
	done
}

BOOTED=0
for n in $NODES_LIST; do
	case $n in 2 | 3 | 4) ;; *) say "NUMA_QEMU_NODES: $n is not 2, 3 or 4 (the guest has 4 CPUs)"; exit 1 ;; esac
	log="$WORK/vm-$n.log"
	say "booting a $n-node guest ($ACCEL)"
	t0=$(date +%s)
	kvm_rc=0
	boot "$n" "$ACCEL" "$log" || kvm_rc=$?
	if [ "$ACCEL" = kvm ] && ! grep -q '^NUMA-QEMU: BEGIN' "$log"; then
		echo
		if [ "$kvm_rc" = 2 ]; then
			say "WARNING: KVM started but the guest kernel printed nothing for 40 s (nested KVM not working here)"
		else
			say "WARNING: KVM did not boot the guest:"
		fi
		tail -5 "$log" | sed 's/^/    /'
		say "WARNING: falling back to TCG (software emulation, several times slower) for this and the remaining guests"
		echo
		ACCEL=tcg
		t0=$(date +%s)
		boot "$n" "$ACCEL" "$log" || true
	fi
	if ! grep -q '^NUMA-QEMU: BEGIN' "$log"; then
		if [ "$BOOTED" = 0 ] && ! grep -q 'Linux version\|NUMA-QEMU' "$log"; then
			tail -15 "$log" | sed 's/^/    /'
			skip_all "qemu could not boot a guest (no usable KVM and TCG failed; output above)"
		fi
	else
		BOOTED=1
	fi
	echo "----- $n-node guest console ($(($(date +%s) - t0)) s) -----"
	cat "$log"
	echo "----- end of $n-node guest console -----"
	parse "$n" "$log"
done

say "guests: $NODES_LIST nodes ($ACCEL), $(($(date +%s) - START)) s in all"
say "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
