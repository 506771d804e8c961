#!/bin/sh
# Re-captures the real-fio fixtures in this directory (tests/bench/test_fio_json.py reads them).
# Small and short on purpose: 8 MiB file, 1 s per run, O_DIRECT on a local-disk temp dir
# (not /dev/shm: tmpfs refuses O_DIRECT). Hand-made fixtures (old_fio2.json,
# warning_prefix.json) are not produced here.
set -eu
out=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/fio-capture.XXXXXX")
trap 'rm -rf "$dir"' EXIT
common="--filename=$dir/data --size=8M --runtime=1 --time_based --direct=1 --ioengine=libaio"

fio --name=randread  $common --rw=randread  --bs=4k --iodepth=8 --output-format=json > "$out/randread.json"
fio --name=randwrite $common --rw=randwrite --bs=4k --iodepth=8 --output-format=json > "$out/randwrite.json"
fio --name=randrw    $common --rw=randrw --rwmixread=70 --bs=4k --iodepth=8 --output-format=json > "$out/randrw.json"
fio --name=seqread   $common --rw=read --bs=128k --iodepth=4 --output-format=json > "$out/read.json"
fio --name=numjobs   $common --rw=randread --bs=4k --iodepth=4 --numjobs=2 --output-format=json > "$out/numjobs2.json"
fio --name=grouped   $common --rw=randread --bs=4k --iodepth=4 --numjobs=2 --group_reporting --output-format=json > "$out/numjobs2_group.json"
fio --name=jsonplus  $common --rw=randread --bs=4k --iodepth=1 --output-format=json+ > "$out/randread_jsonplus.json"
# A job that fails: a directory where fio expects a file (fio reports error 21, EISDIR, and exits 1).
mkdir "$dir/adir"
fio --name=badjob --filename="$dir/adir" --size=1M --rw=read --output-format=json > "$out/job_error.json" 2>/dev/null || true
