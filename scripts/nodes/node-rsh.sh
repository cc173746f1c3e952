#!/usr/bin/env bash
# An rshcmd for parallel::makePSOCKcluster: parallel runs
#   RSHCMD [-l USER] HOST 'worker command'
# and this starts the worker command inside pretend node HOST (enter-node.sh), as
# ssh would on a real host. Use with master = "127.0.0.1" (the network is shared).
set -euo pipefail
if [ "${1:-}" = "-l" ]; then shift 2; fi
host=${1:?usage: node-rsh.sh [-l USER] HOST COMMAND}; shift
exec "$(dirname "$0")/enter-node.sh" "$host" sh -c "$*"
