#!/bin/bash
# Instructions (user space) per 4k read through ioengine, counted by callgrind: the slope between
# 4,000 and 20,000 reads of scripts/cpu_per_io.py, so start-up does not count. Repeatable on a
# noisy machine, unlike seconds. Usage: scripts/icount.sh [PYTHONPATH] (LOOP=uvloop for uvloop,
# WRITE=1 for 4k dma_writes, QD, BATCH=k for File.dma_read_many batches of k, BUFFERED=1 for
# a buffered file (page-cache hits at the call; tmpfs refuses RWF_NOWAIT, so FILE=a file on ext4,
# 64 MiB or more, cached): all reach
# cpu_per_io.py through the environment, exported here; OPTS="k=v ..." reactor options, e.g.
# OPTS=idle_poll_time_us=0 QD=1 for one read per loop turn without the spin). PYTHONPATH
# another checkout (its extensions built) measures that one with this script.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pp=${1:-$here}
py=${PYTHON:-$here/.venv/bin/python}
export LOOP=${LOOP:-} WRITE=${WRITE:-0} QD=${QD:-32} BATCH=${BATCH:-0} BUFFERED=${BUFFERED:-0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 4000 20000; do
  PYTHONPATH=$pp N=$n valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n.out" \
    "$py" "$here/scripts/cpu_per_io.py" "${FILE:-/dev/shm/ioe.dat}" ${OPTS:-} >/dev/null 2>"$tmp/cg.$n.err"
  grep -o "Collected : [0-9]*" "$tmp/cg.$n.err" | awk '{print $3}' > "$tmp/cg.$n.total"
done
a=$(cat "$tmp/cg.4000.total"); b=$(cat "$tmp/cg.20000.total")
echo "instructions/io: $(( (b - a) / 16000 ))"
