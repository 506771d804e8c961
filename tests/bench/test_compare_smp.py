"""ioengine-bench compare --smp N: each row on N shards against fio numjobs=N on the same file."""
from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import pytest

from ioengine import ReactorOptions
from ioengine.bench import compare as compare_mod
from ioengine.bench import report
from ioengine.bench.__main__ import main
from ioengine.bench.compare import CompareSetupError, Sample, fio_args, fio_memory, run_matrix, select_rows
from ioengine.bench.fio_json import run_fio as real_run_fio
from ioengine.bench.hugepages import hugetlb_pages_for
from ioengine.bench.workloads import (
    Pattern,
    RunResult,
    SmpLoopMismatch,
    UvloopUnavailable,
    ensure_bench_file,
    merge_runs,
    run_pattern_smp,
    seq_part_size,
    shard_region,
    shard_seed,
    smp_loop_kinds,
    uvloop_module,
)

needs_fio = pytest.mark.fio  # skipped without fio (tests/conftest.py)
needs_2_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="smp=2 needs two CPUs")

SMP_NOTE = "ioengine: 2 shards (processes), QD per shard; fio: numjobs=2"


def _has_uvloop() -> bool:
    try:
        uvloop_module()
    except UvloopUnavailable:
        return False
    return True


# ------------------------------------------------------------------------------- end to end


@needs_fio
@needs_2_cpus
@pytest.mark.slow
@pytest.mark.real_disk
def test_compare_smp2_end_to_end(scratch: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """One short row on 2 real shards and fio numjobs=2: the JSON says smp=2, fio got numjobs=2."""
    commands: list[list[str]] = []

    def recording_run_fio(args, **kw):
        commands.append(list(args))
        return real_run_fio(args, **kw)

    monkeypatch.setattr(compare_mod, "run_fio", recording_run_fio)
    out = scratch / "r.json"
    rc = main(["compare", "--smp", "2", "--rows", "randread-qd32", "--seconds", "0.5", "--rounds", "1",
               "--size", "16M", "--file", str(scratch / "bench.dat"), "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "ioengine on 2 shards vs fio numjobs=2" in text and "randread-qd32 round 1/1" in text
    assert "numjobs=2" in text and SMP_NOTE in text
    doc = json.loads(out.read_text())
    assert doc["meta"]["smp"] == 2 and doc["meta"]["fio_numjobs"] == 2
    assert any(SMP_NOTE in n for n in doc["meta"]["notes"])
    (cmd,) = commands
    assert "--numjobs=2" in cmd and "--group_reporting" in cmd and "--iodepth=32" in cmd
    assert f"--size={16 << 20}" in cmd and not any(a.startswith("--offset_increment") for a in cmd)
    (row,) = doc["rows"]
    assert "ioengine" in row["median"] and "fio" in row["median"]
    for side in ("ioengine", "fio"):
        m = row["median"][side]
        assert m["iops"] > 100 and m["cpu_us_per_io"] > 0
        assert 0 < m["p50_us"] <= m["p99_us"] <= m["p999_us"]
    # uvloop: run when every shard gets it, else skipped with a note that says why.
    if "ioengine-uvloop" not in row["median"] and _has_uvloop():
        assert any("ioengine-uvloop side is skipped" in n for n in doc["meta"]["notes"])


@needs_2_cpus
def test_run_pattern_smp_sums_the_shards(scratch: Path) -> None:
    """Real shards: both ran, IOPS / bytes / CPU of the run are the shards' sums, latencies merged."""
    path = str(scratch / "p.dat")
    ensure_bench_file(path, 16 << 20)
    r = run_pattern_smp(path, Pattern("randread", 4096, 4), 0.5, smp=2, latency=True)
    assert len(r.shards) == 2
    for s in r.shards:
        assert s.ios > 0 and s.cpu_seconds > 0 and 0.4 < s.seconds < 5 and not s.latencies_ns
    assert r.ios == sum(s.ios for s in r.shards) and r.bytes == r.ios * 4096
    assert r.iops == pytest.approx(sum(s.iops for s in r.shards))
    assert r.mb_per_s == pytest.approx(sum(s.mb_per_s for s in r.shards))
    assert r.cpu_seconds == pytest.approx(sum(s.cpu_seconds for s in r.shards))
    assert len(r.latencies_ns) == r.ios
    # The compare's ioengine side is the same run, as a Sample.
    s = compare_mod.run_ioengine_side(path, 16 << 20, Pattern("randread", 4096, 4), 0.3, ReactorOptions(), smp=2)
    assert s.iops > 0 and s.cpu_us_per_io > 0 and s.p50_us > 0


@needs_2_cpus
def test_run_pattern_smp_sequential_regions(scratch: Path) -> None:
    """Sequential dma rows: each shard its own half of the file (reads and writes both run)."""
    path = str(scratch / "s.dat")
    ensure_bench_file(path, 16 << 20)
    for rw in ("read", "write"):
        r = run_pattern_smp(path, Pattern(rw, 128 << 10, 2), 0.3, smp=2)
        assert len(r.shards) == 2 and all(s.ios > 0 for s in r.shards)
    assert os.path.getsize(path) == 16 << 20
    with pytest.raises(ValueError, match="stream patterns run on one shard only"):
        run_pattern_smp(path, Pattern("write", 128 << 10, 4, api="stream"), 0.1, smp=2)
    with pytest.raises(ValueError, match="less than one"):
        run_pattern_smp(path, Pattern("read", 16 << 20, 1), 0.1, smp=2)


@needs_2_cpus
def test_smp_run_checks_every_shards_loop(scratch: Path) -> None:
    """Asked for uvloop, the run measures only if every shard runs it; else it says which does not."""
    if not _has_uvloop():
        pytest.skip("uvloop is not installed")
    path = str(scratch / "u.dat")
    ensure_bench_file(path, 4 << 20)
    kinds = smp_loop_kinds(2, "uvloop")
    assert kinds[0] == "uvloop"
    if kinds == ["uvloop", "uvloop"]:
        assert run_pattern_smp(path, Pattern("randread", 4096, 2), 0.2, smp=2, loop="uvloop").ios > 0
    else:
        with pytest.raises(SmpLoopMismatch, match=f"shard 1 runs on {kinds[1]}'s"):
            run_pattern_smp(path, Pattern("randread", 4096, 2), 0.2, smp=2, loop="uvloop")


# ------------------------------------------------------------------------------- pieces


def test_merge_runs_adds_like_group_reporting() -> None:
    a = RunResult(1000, 1000 * 4096, 0.5, 0.25, [10, 20, 30])
    b = RunResult(3000, 3000 * 4096, 1.0, 0.5, [40, 50])
    m = merge_runs([a, b])
    assert m.iops == pytest.approx(2000 + 3000)  # each shard's rate, summed
    assert m.mb_per_s == pytest.approx(a.mb_per_s + b.mb_per_s)
    assert m.ios == 4000 and m.bytes == 4000 * 4096 and m.cpu_seconds == 0.75
    assert m.cpu_us_per_io == pytest.approx(0.75 / 4000 * 1e6)
    assert sorted(m.latencies_ns) == [10, 20, 30, 40, 50]
    assert [(s.ios, s.seconds, s.latencies_ns) for s in m.shards] == [(1000, 0.5, []), (3000, 1.0, [])]
    assert math.isnan(merge_runs([RunResult(0, 0, 0.5, 0.1)]).cpu_us_per_io)
    s = Sample.from_run(m)
    assert s.iops == pytest.approx(5000) and s.p50_us == 0.03


def test_shard_regions_and_seeds() -> None:
    size = 16 << 20
    rnd, seq = Pattern("randread", 4096, 32), Pattern("write", 128 << 10, 4)
    assert [shard_region(rnd, size, 2, k) for k in range(2)] == [None, None]  # the whole file each
    assert shard_region(seq, size, 1, 0) is None
    assert [shard_region(seq, size, 2, k) for k in range(2)] == [(0, 8 << 20), (8 << 20, 8 << 20)]
    parts = [shard_region(seq, 10 << 20, 3, k) for k in range(3)]
    assert all(start % (128 << 10) == 0 and length % (128 << 10) == 0 for start, length in parts)
    assert all(parts[k][0] + parts[k][1] <= parts[k + 1][0] for k in range(2)) and sum(p[1] for p in parts) <= 10 << 20
    assert seq_part_size(seq, 10 << 20, 3) == parts[0][1]
    assert shard_seed(1, 0) == 1 and len({shard_seed(1, k) for k in range(8)}) == 8


def test_fio_args_numjobs() -> None:
    opts = ReactorOptions()
    one = fio_args("/f", 16 << 20, Pattern("randread", 4096, 32), 1.0, opts)
    assert not any(a.startswith(("--numjobs", "--group_reporting", "--offset_increment")) for a in one)
    two = fio_args("/f", 16 << 20, Pattern("randwrite", 4096, 32), 1.0, opts, smp=2)
    assert {"--numjobs=2", "--group_reporting", "--iodepth=32", f"--size={16 << 20}", "--filename=/f"} <= set(two)
    seq = fio_args("/f", 16 << 20, Pattern("read", 128 << 10, 4), 1.0, opts, smp=2)
    assert {"--numjobs=2", f"--size={8 << 20}", f"--offset_increment={8 << 20}"} <= set(seq)
    assert f"--size={16 << 20}" not in seq


# ------------------------------------------------------------------------------- the matrix with fake sides


def test_matrix_smp_with_fake_sides(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    called = []

    def side(name: str, iops: float):
        def run(path, size, pattern, seconds):
            called.append((name, pattern.rw))
            return Sample(iops, iops * pattern.bs / 1e6, 10.0, 50.0, 90.0, 99.0)
        return run

    sides = {"ioengine": side("ioengine", 3000.0), "fio": side("fio", 2000.0)}
    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd32,write-stream"), 0.1, 1,
                   ReactorOptions(), sides=sides, smp=2, caio=True)
    assert called == [("ioengine", "randread"), ("fio", "randread")]  # the stream row is left out
    assert [r.row.name for r in m.rows] == ["randread-qd32"]
    assert m.meta["smp"] == 2 and m.rows[0].ratios()["iops"] == 1.5
    assert "caio is a one-process column" in m.rows[0].skipped["caio"]
    out = capsys.readouterr().out
    assert "write-stream not run" in out
    table = io.StringIO()
    report.print_table(m, table, use_rich=False)
    text = table.getvalue()
    assert SMP_NOTE in text and "sums over the 2 shards / jobs" in text
    assert "sum over shards of each process's user+sys" in text
    assert report._title(m) == "ioengine (2 shards) vs fio (numjobs=2)"
    assert SMP_NOTE in report.markdown(m)
    assert json.loads(json.dumps(m.to_json()))["meta"]["smp"] == 2
    with pytest.raises(CompareSetupError, match="no row to run with smp=2"):
        run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("read-stream"), 0.1, 1, ReactorOptions(),
                   sides=sides, smp=2, progress=None)
    # smp=1 keeps its plain title and note.
    m1 = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd32"), 0.1, 1, ReactorOptions(),
                    sides=sides, progress=None)
    assert m1.meta["smp"] == 1 and report._title(m1) == "ioengine vs fio"
    assert not any("numjobs" in n for n in report.columns(m1, unicode=True)[2])


@pytest.mark.parametrize("kinds", [["uvloop", "asyncio"], ["uvloop", "uvloop"]])
def test_default_runners_pass_smp_and_check_uvloop(monkeypatch: pytest.MonkeyPatch, scratch: Path,
                                                   kinds: list[str]) -> None:
    seen = []

    def fake_ioengine(path, size, pattern, seconds, options, latency=True, loop="asyncio", smp=1, cpuset=None):
        seen.append((loop, smp, cpuset))
        return Sample(1000.0, 4.1, 10.0)

    def fake_fio(path, size, pattern, seconds, options, iomem=None, smp=1):
        seen.append(("fio", smp, None))
        return Sample(2000.0, 8.2, 5.0)

    monkeypatch.setitem(sys.modules, "uvloop", type(sys)("uvloop"))  # importable, whatever is installed
    monkeypatch.setattr(compare_mod, "run_ioengine_side", fake_ioengine)
    monkeypatch.setattr(compare_mod, "run_fio_side", fake_fio)
    monkeypatch.setattr(compare_mod, "smp_loop_kinds", lambda n, loop, options, cpuset: list(kinds))
    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 1, ReactorOptions(),
                   progress=None, smp=2, cpuset="0-1")
    if kinds == ["uvloop", "uvloop"]:
        assert seen == [("asyncio", 2, "0-1"), ("uvloop", 2, "0-1"), ("fio", 2, None)]
        assert m.meta["loops"] == ["asyncio", "uvloop"]
    else:
        assert seen == [("asyncio", 2, "0-1"), ("fio", 2, None)] and m.meta["loops"] == ["asyncio"]
        assert any("ioengine-uvloop side is skipped" in n and "1 (asyncio)" in n for n in m.meta["notes"])
        with pytest.raises(CompareSetupError, match="no loop left"):
            run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 1, ReactorOptions(),
                       progress=None, smp=2, loops="uvloop")


def test_cli_smp_with_only_stream_rows_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("smp=2 needs two CPUs")
    assert main(["compare", "--smp", "2", "--rows", "read-stream,write-stream"]) == 2
    assert "run on one shard only" in capsys.readouterr().err


# ------------------------------------------------------------------------------- fio's memory per row


def test_fio_args_iomem_as_decided() -> None:
    opts = ReactorOptions()
    rows = select_rows("randread-qd32,read-dma")
    iomem = fio_memory(rows, "auto", opts, thp="madvise")
    assert iomem == {"randread-qd32": "malloc", "read-dma": "shmhuge"}
    assert fio_memory(rows, "auto", opts, thp="never") == {"randread-qd32": "malloc", "read-dma": "malloc"}
    assert fio_memory(rows, "mmaphuge", opts, thp="never")["randread-qd32"] == "mmaphuge"
    assert set(fio_memory(rows, None, opts).values()) == {"malloc"}
    for r in rows:
        args = fio_args("/f", 16 << 20, r.pattern, 1.0, opts, iomem[r.name], smp=2)
        assert f"--iomem={iomem[r.name]}" in args and "--numjobs=2" in args


@pytest.mark.parametrize("ok", [True, False])
def test_matrix_gives_fio_huge_pages(monkeypatch: pytest.MonkeyPatch, scratch: Path, ok: bool) -> None:
    seen: list[tuple[str, str | None, int]] = []
    reserved: list[int] = []

    def fake_ioengine(path, size, pattern, seconds, options, latency=True, loop="asyncio", smp=1, cpuset=None):
        return Sample(1000.0, 4.1, 10.0)

    def fake_fio(path, size, pattern, seconds, options, iomem=None, smp=1):
        seen.append((pattern.rw, iomem, smp))
        return Sample(2000.0, 8.2, 5.0)

    class FakeReservation:
        def __init__(self, pages: int) -> None:
            reserved.append(pages)
            self.ok, self.reason, self.message = ok, "" if ok else "not root", "reserved 0 -> 5"

        def __enter__(self) -> FakeReservation:
            return self

        def __exit__(self, *exc: object) -> None:
            reserved.append(-1)

    monkeypatch.setattr(compare_mod, "run_ioengine_side", fake_ioengine)
    monkeypatch.setattr(compare_mod, "run_fio_side", fake_fio)
    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1,write-dma"), 0.1, 1, ReactorOptions(),
                   progress=None, loops="asyncio", fio_iomem="auto", thp="madvise", reserve=FakeReservation)
    assert reserved == [hugetlb_pages_for(128 << 10, 4), -1]  # one reservation around the whole matrix
    huge = "shmhuge" if ok else "malloc"
    assert seen == [("randread", "malloc", 1), ("write", huge, 1)]
    assert [r.fio_iomem for r in m.rows] == ["malloc", huge]
    assert m.to_json()["rows"][1]["fio_iomem"] == huge and m.meta["fio_iomem"] == "auto"
    notes = " ".join(m.meta["notes"])
    assert "fio's buffer memory, as ioengine's" in notes and "reserved 0 -> 5" in notes
    assert ("keeps malloc'd buffers in 128k seq write" in notes) is not ok
