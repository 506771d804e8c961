"""ioengine-bench run: fio's I/O priorities (prio, prioclass, cmdprio_*) and the priority column
of fio's logs (log_prio, log_offset), on real files."""
from __future__ import annotations

import collections
import textwrap
from pathlib import Path

import pytest

from ioengine import IoPrioClass, ioprio_value
from ioengine.bench.__main__ import main
from ioengine.bench.jobfile import JobFileError, parse_job_text

RT0 = ioprio_value(IoPrioClass.RT, 0)


def jobs_of(text: str):
    return parse_job_text(textwrap.dedent(text), "test.fio")


def write_job(d: Path, text: str) -> Path:
    p = d / "job.fio"
    p.write_text(textwrap.dedent(text).format(dir=d))
    return p


def log_rows(path: Path) -> list[list[str]]:
    return [line.split(", ") for line in path.read_text().splitlines()]


def test_priorities_parse_as_fio_reads_them():
    (j,) = jobs_of("[j]\nioengine=libaio\nprioclass=3\ncmdprio_percentage=20,30\ncmdprio_class=1\n")
    assert j.ioprio == ioprio_value(IoPrioClass.IDLE, 0)
    assert j.cmdprio_table(0) == [(0, 20, RT0)] and j.cmdprio_table(1) == [(0, 30, RT0)]
    (j,) = jobs_of("[j]\nprio=7\n")  # a level without a class: best effort (fio's ioprio_set)
    assert j.ioprio == ioprio_value(IoPrioClass.BE, 7)
    (j,) = jobs_of("[j]\n")
    assert j.ioprio == 0 and not j.uses_cmdprio
    (j,) = jobs_of("[j]\nioengine=io_uring\ncmdprio_bssplit=64k/25/1/1:64k/75/3/2:1m/0,1m/10\ncmdprio=4\n")
    assert j.cmdprio_table(0) == [(65536, 25, ioprio_value(1, 1)), (65536, 100, ioprio_value(3, 2))]
    assert j.cmdprio_table(1) == [(1 << 20, 10, ioprio_value(IoPrioClass.RT, 4))]  # simple form: cmdprio_*
    (j,) = jobs_of("[j]\nioengine=io_uring\ncmdprio_bssplit=1M/10/2/0/1:1M/30/2/0/2\n")
    assert j.cmdprio_table(0)[0] == (1 << 20, 10, ioprio_value(2, 0, hint=1))


@pytest.mark.parametrize("line, says", [
    ("prio=8", "out of range"),
    ("prioclass=4", "out of range"),
    ("cmdprio_percentage=101", "out of range"),
    ("cmdprio_class=0", "out of range"),
    ("cmdprio_bssplit=4k/60:4k/50", "add up to more than 100"),
    ("cmdprio_bssplit=4k/60/1", "BS/PERCENT/CLASS/LEVEL"),
    ("cmdprio_bssplit=4k/10/5/0", "out of range"),
])
def test_bad_priority_values_are_refused_with_their_line(line, says):
    with pytest.raises(JobFileError) as e:
        jobs_of(f"[j]\nioengine=libaio\n{line}\n")
    assert says in str(e.value) and "line 3" in str(e.value)


def test_cmdprio_needs_libaio_or_io_uring_and_not_both_forms(scratch: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [j]
        size=256k
        filename={dir}/d.dat
        cmdprio_percentage=10
    """)
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "libaio and io_uring" in err and "psync" in err
    job = write_job(scratch, """\
        [j]
        ioengine=io_uring
        size=256k
        filename={dir}/d.dat
        cmdprio_percentage=10
        cmdprio_bssplit=4k/10
    """)
    assert main(["run", str(job)]) == 2
    assert "mutually exclusive" in capsys.readouterr().err


def test_cmdprio_percentage_and_log_prio(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """cmdprio-percentage.fio's shape: the job's requests in the idle class, a fifth of them RT;
    log_prio writes each request's ioprio, log_offset its offset before it."""
    job = write_job(scratch, """\
        [j]
        direct=1
        rw=randread
        bs=4k
        size=2m
        ioengine=libaio
        iodepth=8
        prioclass=3
        cmdprio_percentage=20
        cmdprio_class=1
        filename={dir}/d.dat
        write_lat_log={dir}/p
        log_prio=1
        log_offset=1
    """)
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    rows = log_rows(scratch / "p_lat.1.log")
    assert len(rows) == 512 and all(len(r) == 6 for r in rows)
    assert all(int(r[4]) % 4096 == 0 for r in rows)
    seen = collections.Counter(r[5] for r in rows)
    assert set(seen) == {"0x2000", "0x6000"}  # RT level 0, idle
    assert 0.12 < seen["0x2000"] / len(rows) < 0.28


def test_log_priority_column_without_log_prio(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fio's default columns: time, value, direction, block size, then the priority as 1 (RT) or
    0; no offset column without log_offset."""
    job = write_job(scratch, """\
        [rt]
        direct=1
        rw=randwrite
        bs=4k
        size=128k
        prioclass=1
        filename={dir}/d.dat
        write_lat_log={dir}/a
        [plain]
        stonewall
        direct=1
        rw=randread
        bs=4k
        size=128k
        filename={dir}/d.dat
        write_lat_log={dir}/b
    """)
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    rt = log_rows(scratch / "a_lat.1.log")
    plain = log_rows(scratch / "b_lat.2.log")
    assert len(rt) == 32 and all(len(r) == 5 and r[2] == "1" and r[3] == "4096" and r[4] == "1" for r in rt)
    assert len(plain) == 32 and all(len(r) == 5 and r[4] == "0" for r in plain)
