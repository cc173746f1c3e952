# Pretend nodes on one Linux machine (run as root): sourced by tests/nodes/*.sh and
# the benchmarks. Each node is a holder process made with
#   unshare --pid --fork --mount-proc --mount --uts --propagation private
# that sets its own hostname and mounts private tmpfs on /dev/shm and /tmp, so that
# processes of one node cannot see another node's pids (/proc), shm files, node-local
# files or memfds: a shard handle made on node A cannot be attached on node B, as on
# real separate machines. Network and filesystem (everything but /tmp and /dev/shm)
# stay shared, as on a cluster with a shared filesystem.
#
#   . scripts/nodes/nodes.sh
#   nodes_up node1 node2          # exports NODES_DIR; installs an EXIT trap
#   scripts/nodes/enter-node.sh node1 Rscript -e '...'
#   nodes_down                    # SIGKILLs every namespace init (also run by the trap)
#
# NODES_NET=1 gives every node its own network namespace too (loopback up, nothing else:
# scripts/nodes/slurm-cluster.sh wires them to a bridge it creates).
# NODES_NO_NS=1 makes "nodes" without namespaces (plain processes sharing everything):
# the negative control that proves a test can tell the two apart.
# Facts this relies on (../../../shared/DESIGN.md, "Across nodes"): a namespace's init
# ignores SIGTERM from outside, so teardown is SIGKILL by pid; without nsenter --wd the
# working directory changes; the VM's pid 1 does not reap orphans, so this shell waits
# for each holder.

NODES_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODES_HOLDERS=()   # pids of the unshare processes (parents of the namespace inits)
NODES_INITS=()     # pids (in our namespace) of each node's init

nodes_up() {
  [ "$(id -u)" = 0 ] || { echo "nodes: pretend nodes need root (unshare --pid --mount --uts)"; return 1; }
  if [ -z "${NODES_DIR:-}" ]; then
    NODES_DIR=$(mktemp -d "${NODES_BASE:-/var/tmp}/shard-nodes.XXXXXX")
    NODES_OWN_DIR=1
  fi
  export NODES_DIR
  trap nodes_down EXIT
  trap 'exit 130' INT TERM HUP
  local node upid init i
  for node in "$@"; do
    case $node in *[!a-z0-9-]*|"") echo "nodes: bad node name '$node' (use a-z, 0-9, -)"; return 1;; esac
    rm -f "$NODES_DIR/$node.ready" "$NODES_DIR/$node.pid"
    if [ "${NODES_NO_NS:-0}" = 1 ]; then
      # Negative control: a plain process; "entering" it changes nothing.
      # Its own process group (setsid), so that teardown kills its sleep too.
      setsid bash -c 'touch "$1/$2.ready"; while :; do sleep 3600 & wait $!; done' holder "$NODES_DIR" "$node" \
        </dev/null >/dev/null 2>&1 &
      upid=$!; init=-$upid
    else
      local net=()
      [ "${NODES_NET:-0}" = 1 ] && net=(--net)
      unshare "${net[@]}" --pid --fork --mount-proc --mount --uts --propagation private \
        bash -c 'set -e
          hostname "$2"
          if [ -n "$3" ]; then ip link set lo up; fi
          mount -t tmpfs -o mode=1777 "shm-$2" /dev/shm
          mount -t tmpfs -o mode=1777 "tmp-$2" /tmp
          touch "$1/$2.ready"
          trap "exit 0" TERM
          # pid 1 of the namespace: bash reaps the orphans that end up here.
          while :; do sleep 3600 & wait $!; done' holder "$NODES_DIR" "$node" "${net[*]}" </dev/null >/dev/null 2>&1 &
      upid=$!
      init=""
      for i in $(seq 1 200); do
        init=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')
        [ -n "$init" ] && [ -e "$NODES_DIR/$node.ready" ] && break
        sleep 0.05
      done
    fi
    NODES_HOLDERS+=("$upid")
    for i in $(seq 1 200); do [ -e "$NODES_DIR/$node.ready" ] && break; sleep 0.05; done
    if [ -z "$init" ] || [ ! -e "$NODES_DIR/$node.ready" ]; then
      echo "nodes: node $node did not come up (unshare pid $upid)"; return 1
    fi
    NODES_INITS+=("$init")
    echo "${init#-}" > "$NODES_DIR/$node.pid"
  done
}

# Pid (in this namespace) of node NAME's init: what nsenter -t takes.
node_pid() { cat "$NODES_DIR/$1.pid"; }

nodes_down() {
  local p
  # Killing a pid namespace's init kills every process in it (daemons, R workers).
  # (A negative "pid" is the control's process group.)
  for p in "${NODES_INITS[@]}"; do kill -KILL -- "$p" 2>/dev/null || true; done
  for p in "${NODES_HOLDERS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  NODES_INITS=(); NODES_HOLDERS=()
  if [ "${NODES_OWN_DIR:-0}" = 1 ] && [ -n "${NODES_DIR:-}" ]; then rm -rf "$NODES_DIR"; fi
}
