#!/usr/bin/env bash
# enter-node.sh NODE CMD [ARGS...]: runs CMD inside pretend node NODE (see nodes.sh),
# keeping the working directory (nsenter --wd; a directory under /tmp is node-local,
# so / is used instead) and using the node's own /tmp. Needs NODES_DIR.
set -euo pipefail
node=${1:?usage: enter-node.sh NODE CMD...}; shift
[ -n "${NODES_DIR:-}" ] || { echo "enter-node.sh: NODES_DIR is not set (source scripts/nodes/nodes.sh and run nodes_up)" >&2; exit 2; }
pidf="$NODES_DIR/$node.pid"
[ -r "$pidf" ] || { echo "enter-node.sh: no pretend node '$node' in $NODES_DIR" >&2; exit 2; }
wd=$PWD
case $wd in /tmp|/tmp/*) wd=/ ;; esac
export TMPDIR=/tmp SHARD_PRETEND_NODE="$node"
if [ "${NODES_NO_NS:-0}" = 1 ]; then cd "$wd"; exec "$@"; fi
exec nsenter -t "$(cat "$pidf")" --pid --mount --uts --wd="$wd" -- "$@"
