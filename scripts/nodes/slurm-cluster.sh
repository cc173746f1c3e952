# A two-node Slurm 22.05 cluster on one machine, for tests (sourced; run as root):
#   . scripts/nodes/slurm-cluster.sh
#   slurm_up            # nodes ctl, node1, node2; exports SLURM_CONF, SLURM_DIR
#   slurm_client sbatch --wrap hostname     # clients run in the controller's network
#   nodes_down          # (EXIT trap) SIGKILLs every namespace init: all daemons go
#
# Each of ctl (slurmctld), node1 and node2 (slurmd) is a pretend node (nodes.sh) with its
# own network namespace as well: a bridge br0 with 10.77.0.1 lives in ctl's namespace,
# and a veth pair joins each node (eth0, 10.77.0.2, .3) to it, so every address exists
# only inside namespaces made here and nothing touches the machine's own network.
# munged runs once, as a child of this shell, on a socket in SLURM_DIR (a Unix socket on
# the shared filesystem works across network namespaces). Each node has its own /tmp
# (slurmd's spool, pmix). The filesystem under NODES_DIR is shared by all: batchtools
# registries and shared files go there.
# Facts from ../../../shared/DESIGN.md: clients must enter the controller's network with
# nsenter (ip netns exec remounts /sys and slurmd then fails its cgroup check);
# SlurmctldHost must be the controller's hostname.

. "$(dirname "${BASH_SOURCE[0]}")/nodes.sh"
SLURM_PIDS=()      # nsenter parents of slurmctld and the slurmds
MUNGED_PID=

slurm_up() {
  NODES_NET=1 nodes_up ctl node1 node2 || return 1
  # Namespace inits first: the daemons die while their parent nsenter is alive to reap
  # them (killing nsenter first would leave them to pid 1, which does not reap).
  trap 'nodes_down; slurm_down' EXIT
  SLURM_DIR=$NODES_DIR/slurm; export SLURM_DIR
  mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/log"
  local ctl p i=2 n
  ctl=$(node_pid ctl)
  nsenter -t "$ctl" --net sh -c 'ip link add br0 type bridge && ip addr add 10.77.0.1/24 dev br0 && ip link set br0 up' || return 1
  for n in node1 node2; do
    p=$(node_pid "$n")
    nsenter -t "$ctl" --net ip link add "v$n" type veth peer name eth0 netns "$p" || return 1
    nsenter -t "$ctl" --net ip link set "v$n" master br0 up || return 1
    nsenter -t "$p" --net sh -c "ip addr add 10.77.0.$i/24 dev eth0 && ip link set eth0 up" || return 1
    i=$((i + 1))
  done
  # munge: a key of our own, a socket of our own.
  head -c 1024 /dev/urandom > "$SLURM_DIR/munge.key"; chmod 0400 "$SLURM_DIR/munge.key"
  munged -F --force -S "$SLURM_DIR/munge.sock" --key-file="$SLURM_DIR/munge.key" \
    --pid-file="$SLURM_DIR/munged.pid" --log-file="$SLURM_DIR/log/munged.log" \
    --seed-file="$SLURM_DIR/munged.seed" </dev/null >/dev/null 2>&1 &
  MUNGED_PID=$!
  cat > "$SLURM_DIR/slurm.conf" <<CONF
ClusterName=shardtest
SlurmctldHost=ctl(10.77.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SLURM_DIR/munge.sock
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=/tmp/slurmd
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=/tmp/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=60
NodeName=node1 NodeAddr=10.77.0.2 CPUs=4 RealMemory=2000 State=UNKNOWN
NodeName=node2 NodeAddr=10.77.0.3 CPUs=4 RealMemory=2000 State=UNKNOWN
PartitionName=main Nodes=node1,node2 Default=YES MaxTime=30 State=UP OverSubscribe=YES
CONF
  export SLURM_CONF=$SLURM_DIR/slurm.conf
  for i in $(seq 1 100); do [ -S "$SLURM_DIR/munge.sock" ] && break; sleep 0.05; done
  [ -S "$SLURM_DIR/munge.sock" ] || { echo "slurm: munged did not start"; cat "$SLURM_DIR/log/munged.log"; return 1; }
  # Daemons stay in the foreground (-D) as children of nsenter, which waits: nothing is
  # left to the VM's pid 1, and killing a node's init ends them.
  nsenter -t "$ctl" --net --pid --mount --uts -- slurmctld -D -i -f "$SLURM_CONF" </dev/null >/dev/null 2>&1 &
  SLURM_PIDS+=($!)
  for n in node1 node2; do
    nsenter -t "$(node_pid "$n")" --net --pid --mount --uts -- slurmd -D -f "$SLURM_CONF" </dev/null >/dev/null 2>&1 &
    SLURM_PIDS+=($!)
  done
  for i in $(seq 1 200); do
    [ "$(slurm_client sinfo -h -N -o '%N %t' 2>/dev/null | grep -cE ' (idle|mix|alloc)')" = 2 ] && return 0
    sleep 0.1
  done
  echo "slurm: the two nodes did not come up:"; slurm_client sinfo -N 2>&1; tail -5 "$SLURM_DIR"/log/*.log
  return 1
}

# A Slurm client command (sbatch, squeue, sinfo, Rscript that submits) in the
# controller's network namespace only: same filesystem, same pid namespace as the caller.
slurm_client() { nsenter -t "$(node_pid ctl)" --net -- "$@"; }

# After nodes_down: the nsenter parents of the daemons have nothing left to wait for.
slurm_down() {
  local p
  for p in "${SLURM_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SLURM_PIDS=()
  if [ -n "${MUNGED_PID:-}" ]; then kill -KILL "$MUNGED_PID" 2>/dev/null; wait "$MUNGED_PID" 2>/dev/null; MUNGED_PID=; fi
  return 0
}
