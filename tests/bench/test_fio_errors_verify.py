"""ioengine-bench run: errors as fio reports them, verify, and fio's log files (real files, O_DIRECT)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ioengine.bench.__main__ import main


def write_job(d: Path, text: str) -> Path:
    p = d / "job.fio"
    p.write_text(textwrap.dedent(text).format(dir=d))
    return p


def test_layout_error_fails_that_job_only_without_tracebacks(scratch: Path) -> None:
    # EFBIG from the file size limit (like `ulimit -f`): the layout stops at once, the job fails
    # with fio's err= line, the other job runs, exit status 1.
    job = write_job(scratch, """\
        [global]
        direct=1
        ioengine=libaio
        iodepth=4
        [big]
        rw=write
        size=16m
        filename={dir}/big.dat
        [small]
        rw=randread
        size=256k
        filename={dir}/small.dat
    """)
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20));"
            "from ioengine.bench.__main__ import main; sys.exit(main(['run', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(job)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "never retrieved" not in proc.stderr
    assert "job 'big' (clone 0): err=27 (File too large)" in proc.stderr
    assert "big: (groupid=0, jobs=1): err=27" in proc.stdout and "small: (groupid=0, jobs=1): err= 0" in proc.stdout
    assert os.path.getsize(scratch / "big.dat") <= 2 << 20


def test_shards_that_do_not_fit_the_file_size_limit_are_a_clear_error(scratch: Path) -> None:
    # --smp 2 under `ulimit -f` 2 MiB: the shards' shared memory (a memfd) would not fit; one
    # line naming the limit, exit 1, no traceback, no SIGXFSZ (the default kills the process).
    job = write_job(scratch, """\
        [a]
        rw=randread
        size=256k
        numjobs=2
        filename={dir}/a.dat
    """)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20));"
            "from ioengine.bench.__main__ import main; sys.exit(main(['run', '--smp', '2', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(job)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "is more than the file size limit (2097152 bytes, `ulimit -f`)" in proc.stderr


@pytest.mark.parametrize("kind", ["md5", "crc32", "sha256", "pattern"])
def test_verify_passes_on_good_data(scratch: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, f"""\
        [w]
        direct=1
        ioengine=io_uring
        iodepth=4
        rw=randwrite
        bssplit=4k/50:16k/50
        size=512k
        filename={{dir}}/v.dat
        verify={kind}
        verify_pattern=0xfeedface
        verify_backlog=8
    """)
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "err= 0" in out and "read: IOPS=" in out  # the verify reads are reads, as in fio


def test_verify_mismatch_is_reported_like_fio(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Data laid out at random carries no verify headers: a read job verifying it must fail.
    job = write_job(scratch, """\
        [r]
        direct=1
        rw=read
        bs=4k
        size=64k
        filename={dir}/r.dat
        verify=md5
        verify_fatal=1
    """)
    assert main(["run", str(job)]) == 1
    out, err = capsys.readouterr()
    assert "verify: bad magic header" in err and "at file" in err and "offset 0, length 4096" in err
    assert "err=84" in out and err.count("bad magic header") == 1  # verify_fatal: the first one stops it


def test_logs_in_fios_format(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [lg]
        direct=1
        rw=randread
        bs=4k
        size=128k
        filename={dir}/l.dat
        write_lat_log={dir}/lg
        write_bw_log={dir}/lg
        write_iops_log={dir}/lg
    """)
    assert main(["run", str(job)]) == 0
    capsys.readouterr()
    for kind in ("lat", "clat", "slat", "bw", "iops"):
        lines = (scratch / f"lg_{kind}.1.log").read_text().splitlines()
        assert len(lines) == 32  # one line per I/O without log_avg_msec
        fields = [int(x) for x in lines[0].split(", ")]
        assert len(fields) == 5 and fields[2] == 0 and fields[3] == 4096 and fields[4] % 4096 == 0


@pytest.mark.parametrize("engine", ["psync", "io_uring"])
def test_time_based_verify_writes_and_verifies_pass_after_pass(scratch: Path, engine: str) -> None:
    # fio's do_io with time_based and verify: size bytes written, then read back and checked, again
    # until the runtime ends (which also ends a verify, and leaves a cut pass unverified).
    import time

    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs

    job = write_job(scratch, f"""\
        [v]
        ioengine={engine}
        iodepth=4
        rw=randwrite
        bs=4k
        size=64k
        filename={{dir}}/t.dat
        verify=crc32
        time_based
        runtime=500ms
    """)
    t = time.monotonic()
    (cr,) = [c for g in run_jobs(parse_job_file(job)).groups for c in g]
    elapsed = time.monotonic() - t
    assert not cr.error and cr.verify_errors == []
    writes, reads = cr.ios(1), cr.ios(0)
    assert reads >= 3 * 16  # several passes of 16 blocks, each verified
    assert writes - 16 <= reads <= writes  # all but a pass the runtime cut
    assert cr.runtime_ns < 1_000_000_000 and elapsed < 3.0  # the verify does not run past the runtime
    # fio's update_runtime: the writes' runtime is the write passes', the reads' the verify
    # passes', so each direction's IOPS is its phases' rate (and the two add up to the run)
    assert cr.dir_runtime_ns is not None
    w_ns, r_ns = cr.dir_runtime_ns[1], cr.dir_runtime_ns[0]
    assert 0 < w_ns < cr.runtime_ns and 0 < r_ns < cr.runtime_ns
    assert w_ns + r_ns <= cr.runtime_ns and w_ns + r_ns > 0.9 * cr.runtime_ns


def test_time_based_verify_with_bssplit_writes_each_block_once_per_pass(scratch: Path) -> None:
    # fio's random map with sizes that vary: a pass writes every block once (an I/O is cut at a
    # block already written, mark_random_map), so the verify reads back every write of the pass;
    # whole largest-size slots instead rewrite slots within a pass and read back fewer.
    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs

    job = write_job(scratch, """\
        [v]
        ioengine=io_uring
        iodepth=4
        rw=randwrite
        bssplit=4k/50:16k/50
        size=64k
        filename={dir}/t.dat
        verify=crc32
        time_based
        runtime=500ms
    """)
    (cr,) = [c for g in run_jobs(parse_job_file(job)).groups for c in g]
    assert not cr.error and cr.verify_errors == []
    writes, reads = cr.ios(1), cr.ios(0)
    assert reads >= 3 * 4  # several passes, each verified
    assert writes - 16 <= reads <= writes  # all but a pass the runtime cut (at most 16 4k writes)
    assert cr.sizes is not None and set(cr.sizes[1]) <= {4096, 8192, 12288, 16384}
    assert cr.bytes(0) <= cr.bytes(1) and cr.bytes(1) - cr.bytes(0) <= 64 << 10  # whole passes read back


@pytest.mark.parametrize("backlog", [0, 4])
def test_verify_bssplit_passes_that_overlap_stay_checkable(scratch: Path, backlog: int) -> None:
    # io_size of 16 passes over the region: a new pass's writes overlap the last pass's at other
    # offsets (the map cuts them anywhere); a write waits for an overlapping one in flight, and
    # a write partly rewritten since is not checked (the newer one is), so nothing fails.
    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs

    job = write_job(scratch, f"""\
        [v]
        direct=1
        ioengine=io_uring
        iodepth=8
        rw=randwrite
        bssplit=4k/50:16k/50
        size=64k
        io_size=1m
        filename={{dir}}/o.dat
        verify=md5
        verify_backlog={backlog}
    """)
    (cr,) = [c for g in run_jobs(parse_job_file(job)).groups for c in g]
    assert not cr.error and cr.verify_errors == []
    assert cr.bytes(1) == 1 << 20  # whole passes: the map's cut writes add up to size each
    assert 0 < cr.ios(0) <= cr.ios(1)


def test_verify_job_cut_by_its_runtime_is_not_verified(scratch: Path) -> None:
    # fio's thread_main: a runtime reached in do_io marks the job terminated, and a terminated
    # job breaks out before do_verify: what was written is not read back.
    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs

    job = write_job(scratch, """\
        [v]
        rw=randwrite
        bs=4k
        size=1m
        rate_iops=200
        runtime=200ms
        filename={dir}/c.dat
        verify=crc32
    """)
    (cr,) = [c for g in run_jobs(parse_job_file(job)).groups for c in g]
    assert not cr.error and cr.verify_errors == []
    assert 0 < cr.ios(1) < 256 and cr.ios(0) == 0
