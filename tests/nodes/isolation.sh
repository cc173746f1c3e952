#!/usr/bin/env bash
# Pretend nodes really are separate: own hostname, PID namespace, /dev/shm, /tmp;
# a process of one node is invisible from another. Then the negative control: the same
# checks on "nodes" without namespaces must report the sharing (else they prove nothing).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
if ! why=$(nodes_possible); then skip "pretend nodes ($why)"; exit 0; fi

# isolated A B: 0 when nodes A and B share none of the things checked, 1 otherwise.
isolated() {
  local a=$1 b=$2 ok=0
  [ "$("$ENTER" "$a" hostname)" = "$a" ] || { echo "  $a: hostname is not $a"; ok=1; }
  [ "$("$ENTER" "$a" readlink /proc/self/ns/pid)" != "$("$ENTER" "$b" readlink /proc/self/ns/pid)" ] ||
    { echo "  $a and $b share a PID namespace"; ok=1; }
  "$ENTER" "$a" sh -c 'echo a > /dev/shm/shard-iso-probe; echo a > /tmp/shard-iso-probe'
  "$ENTER" "$b" sh -c '! [ -e /dev/shm/shard-iso-probe ]' || { echo "  $b sees $a's /dev/shm"; ok=1; }
  "$ENTER" "$b" sh -c '! [ -e /tmp/shard-iso-probe ]' || { echo "  $b sees $a's /tmp"; ok=1; }
  "$ENTER" "$a" rm -f /dev/shm/shard-iso-probe /tmp/shard-iso-probe
  # A long-lived process of A, looked up by its pid as A sees it, from B.
  local p
  p=$("$ENTER" "$a" sh -c 'sleep 30 >/dev/null 2>&1 & echo $!')
  if "$ENTER" "$b" sh -c "grep -q '^sleep' /proc/$p/comm 2>/dev/null && grep -q 30 /proc/$p/cmdline"; then
    echo "  $b sees $a's process $p"; ok=1
  fi
  "$ENTER" "$a" kill "$p" 2>/dev/null
  return $ok
}

(
  . "$ROOT/scripts/nodes/nodes.sh"
  nodes_up nodea nodeb || exit 2
  isolated nodea nodeb
) ; rc=$?
check "pretend nodes nodea/nodeb are isolated (hostname, pid ns, /dev/shm, /tmp, processes)" [ $rc = 0 ]
( export NODES_NO_NS=1
  . "$ROOT/scripts/nodes/nodes.sh"
  nodes_up nodea nodeb || exit 2
  isolated nodea nodeb
) ; rc=$?
check "negative control: without namespaces the same check reports sharing" [ $rc = 1 ]
# Teardown: no holder survives its scenario.
left=$(pgrep -f "holder /var/tmp/shard-nodes" || true)
check "teardown left no holder processes" [ -z "$left" ]
exit $NT_FAILED
