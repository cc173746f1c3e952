# Shared by tests/nodes/*.sh: result lines that tests/nodes/run.sh counts.
#   PASS: what        FAIL: what        SKIPPED: what (why)
# A scenario's exit status is non-zero when any check failed.
NT_FAILED=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; NT_FAILED=1; }
skip() { echo "SKIPPED: $*"; }
# check DESCRIPTION CMD...: PASS when CMD succeeds, FAIL otherwise.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ENTER="$ROOT/scripts/nodes/enter-node.sh"
# Can this machine make pretend nodes? (root, user+pid+mount+uts namespaces)
nodes_possible() {
  [ "$(id -u)" = 0 ] || { echo "not root"; return 1; }
  unshare --pid --fork --mount-proc --mount --uts --propagation private true 2>/dev/null ||
    { echo "unshare --pid --mount --uts failed"; return 1; }
}
