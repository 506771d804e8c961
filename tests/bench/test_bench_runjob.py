"""ioengine-bench run JOB.fio: fio job files through ioengine, fio-like text and fio's JSON schema."""
from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ioengine.bench.__main__ import main
from ioengine.bench.fio_json import parse_fio_json
from ioengine.bench.ioplan import FullCycle, IoPlan
from ioengine.bench.jobfile import JobFileError, parse_job_text
from ioengine.bench.jobreport import CloneRun, entries_of
from ioengine.bench.runjob import groups_of, open_options

TWO_JOBS = """\
    [global]
    size=4m
    direct=1
    iodepth=4
    time_based
    runtime=1

    [rr]
    rw=randread
    bs=4k
    filename={dir}/shared.dat

    [wr]
    rw=write
    bs=64k
    iodepth=2
    directory={dir}
"""


def write_job(d: Path, text: str, name: str = "job.fio") -> Path:
    p = d / name
    p.write_text(textwrap.dedent(text).format(dir=d))
    return p


# ------------------------------------------------------------------------------- end to end


def test_run_text_output(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, TWO_JOBS)
    assert main(["run", str(job)]) == 0
    out, err = capsys.readouterr()
    assert "Laying out IO file" in err  # both files were missing
    assert os.path.getsize(scratch / "shared.dat") == 4 << 20 and os.path.getsize(scratch / "wr.0.0") == 4 << 20
    assert "rr: (groupid=0, jobs=1): err= 0" in out and "wr: (groupid=0, jobs=1): err= 0" in out
    assert out.count("   read: IOPS=") == 1 and out.count("  write: IOPS=") == 1
    assert re.search(r"[KMG]iB/s \(", out) and "msec)" in out  # the unit follows the rate, as fio's
    assert out.count("clat percentiles") == 2 and "99.90th=[" in out
    assert out.count("  cpu          : usr=") == 2
    assert "Run status group 0 (all jobs):" in out and "   READ: bw=" in out and "  WRITE: bw=" in out
    assert out.splitlines()[2].startswith("ioengine-")


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")
def test_run_on_uvloop(scratch: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--loop uvloop: the jobs run on uvloop (each shard's loop), with the same report."""
    import asyncio

    from ioengine.bench import runjob

    loops: list[str] = []
    run_group = runjob._run_group

    async def recording(*args: object, **kwargs: object) -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)
        await run_group(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runjob, "_run_group", recording)
    job = write_job(scratch, TWO_JOBS)
    assert main(["run", str(job), "--loop", "uvloop"]) == 0
    out, _ = capsys.readouterr()
    assert "rr: (groupid=0, jobs=1): err= 0" in out and "wr: (groupid=0, jobs=1): err= 0" in out
    assert loops and all(m.startswith("uvloop") for m in loops)


def test_run_on_uvloop_when_missing_is_refused(scratch: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    job = write_job(scratch, TWO_JOBS)
    assert main(["run", str(job), "--loop", "uvloop"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err
    assert not (scratch / "shared.dat").exists()  # refused before anything ran


def test_run_json_round_trip(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, TWO_JOBS)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    text = capsys.readouterr().out
    json.loads(text)  # strict JSON on stdout, nothing else (notes go to stderr)
    res = parse_fio_json(text)
    assert res.version is not None and res.version.startswith("ioengine-") and res.version_tuple
    assert [j.name for j in res.jobs] == ["rr", "wr"]
    rr, wr = res.jobs
    assert rr.error == 0 and wr.error == 0 and res.failed_jobs() == []
    assert rr.read.total_ios > 50 and rr.write.total_ios == 0
    assert wr.write.total_ios > 10 and wr.read.total_ios == 0
    assert rr.read.io_bytes == rr.read.total_ios * 4096 and wr.write.io_bytes == wr.write.total_ios * 65536
    for d in (rr.read, wr.write):
        assert 900 <= d.runtime_ms <= 1500
        assert d.iops == pytest.approx(d.total_ios * 1000 / d.runtime_ms, rel=1e-6)
        assert d.bw_bytes == pytest.approx(d.io_bytes * 1000 / d.runtime_ms, abs=1)
        c = d.clat_ns
        assert c.samples == d.total_ios and 0 < c.min <= c.p50 <= c.p99 <= c.p999 <= c.max
        assert c.min <= c.mean <= c.max
        assert d.lat_ns.mean == c.mean
    assert rr.usr_cpu + rr.sys_cpu > 0 and rr.runtime_ms >= 900
    cpu = res.cpu_us_per_io()
    assert cpu is not None and cpu > 0
    assert rr.options["rw"] == "randread" and "size" not in rr.options  # fio: the job's own options only
    doc = json.loads(text)
    assert doc["global options"]["size"] == "4m"
    j = doc["jobs"][0]
    assert j["iodepth_level"]["1"] == 100.0  # no ioengine=: fio's psync, one I/O in flight
    buckets = sum(j["latency_us"].values()) + sum(j["latency_ns"].values()) + sum(j["latency_ms"].values())
    assert buckets == pytest.approx(100.0)
    r = j["read"]
    assert r["bw_samples"] >= 1 and r["bw_min"] <= r["bw_mean"] <= r["bw_max"] and r["iops_samples"] >= 1
    assert res.total("read").total_ios == rr.read.total_ios


def test_size_based_jobs_numjobs_and_groups(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No time_based: every clone transfers size bytes and stops. stonewall: a second group.
    job = write_job(scratch, """\
        [global]
        direct=1
        filename={dir}/d.dat
        size=1m

        [rand]
        rw=randread
        bs=4k
        iodepth=8
        numjobs=2

        [grouped]
        stonewall
        rw=randrw
        rwmixread=50
        bs=4k,8k
        offset=1m
        numjobs=2
        group_reporting
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    res = parse_fio_json(capsys.readouterr().out)
    assert os.path.getsize(scratch / "d.dat") == 2 << 20  # laid out to offset + size
    assert [(j.name, j.groupid) for j in res.jobs] == [("rand", 0), ("rand", 0), ("grouped", 1)]
    for j in res.jobs[:2]:
        assert j.read.total_ios == 256 and j.read.io_bytes == 1 << 20  # 1 MiB in 4k reads, per clone
    g = res.jobs[2]
    assert g.read.io_bytes + g.write.io_bytes >= 2 << 20  # two clones of 1 MiB each
    assert g.read.io_bytes + g.write.io_bytes <= (2 << 20) + 2 * 8 * 8192
    assert g.read.total_ios > 0 and g.write.total_ios > 0 and g.write.io_bytes == g.write.total_ios * 8192


# ------------------------------------------------------------------------------- how I/O is issued


def _plan(text: str, start: int, length: int) -> list[tuple[int, int, int, int]]:
    """Every I/O a clone of the job would issue (the plan is pure: no file, no clock)."""
    (job,) = parse_job_text(textwrap.dedent(text), "t.fio")
    plan = IoPlan(job, [(start, length)], 1, time_based=False)
    out = []
    while (io := plan.next()) is not None:
        out.append(io)
    return out


def test_random_map_region_and_block_sizes() -> None:
    ops = _plan("""\
        [j]
        rw=randrw
        rwmixread=70
        bs=4k,16k
        iodepth=4
    """, 1 << 20, 1 << 20)
    reads = [p for d, _, p, n in ops if d == 0]
    writes = [(p, n) for d, _, p, n in ops if d == 1]
    assert all(n == 4096 for d, _, _, n in ops if d == 0) and all(n == 16384 for _, n in writes)
    assert all((1 << 20) <= p and p + 4096 <= (2 << 20) and p % 4096 == 0 for p in reads)
    assert all((1 << 20) <= p and p + n <= (2 << 20) and p % 16384 == 0 for p, n in writes)
    assert len(set(reads)) == len(reads) and len({p for p, _ in writes}) == len(writes)  # random map: no repeats
    total = 4096 * len(reads) + sum(n for _, n in writes)
    assert (1 << 20) <= total < (1 << 20) + 16384
    assert 0.55 < len(reads) / len(ops) < 0.85


def test_random_map_covers_every_block_once_per_pass() -> None:
    (job,) = parse_job_text("[j]\nrw=randread\nbs=4k\n", "t.fio")
    plan = IoPlan(job, [(0, 1000 * 4096)], 1, time_based=True)
    first = [plan.next()[2] for _ in range(1000)]  # type: ignore[index]
    second = [plan.next()[2] for _ in range(1000)]  # type: ignore[index]
    assert sorted(first) == sorted(second) == [i * 4096 for i in range(1000)]
    assert first != second and first != sorted(first)
    for n in (1, 2, 3, 5, 1 << 12, (1 << 12) + 1):
        fc = FullCycle(n, 7)
        assert sorted(fc.next() for _ in range(n)) == list(range(n))
        # fill: the same draws as next(), in batches that stop at the pass's end
        one, batched = FullCycle(n, 9), FullCycle(n, 9)
        want = [100 + 8 * one.next() for _ in range(2 * n)]
        got: collections.deque[int] = collections.deque()
        while len(got) < 2 * n:
            if not batched.fill(got, 3, 100, 8):
                got.append(100 + 8 * batched.next())  # the pass's first draw (its on_pass)
        assert list(got) == want


def test_random_map_cuts_variable_sizes_at_a_done_block() -> None:
    # fio's mark_random_map: an I/O is cut at the first block (of the smallest size) already done
    # in this pass, and a drawn block already done moves to the next free one; so each pass
    # covers every block exactly once.
    blocks = 256
    (job,) = parse_job_text("[j]\nrw=randread\nbssplit=4k/50:64k/50\n", "t.fio")
    plan = IoPlan(job, [(8192, blocks * 4096)], 1, time_based=True)
    cut = 0
    for _ in range(3):
        seen = [0] * blocks
        while 0 in seen:
            _, _, pos, n = plan.next()  # type: ignore[misc]
            assert pos % 4096 == 0 and n % 4096 == 0 and 0 < n <= 65536 and 8192 <= pos
            cut += n not in (4096, 65536)
            first = (pos - 8192) // 4096
            for b in range(first, first + n // 4096):
                assert not seen[b], f"block {b} twice in a pass"
                seen[b] = 1
    assert cut > 10
    # a size-based job: exactly its size, every block once
    ops = _plan("[j]\nrw=randwrite\nbssplit=4k/50:64k/50\n", 0, 1 << 20)
    covered = sorted(b for _, _, p, n in ops for b in range(p // 4096, (p + n) // 4096))
    assert covered == list(range(256)) and sum(n for *_, n in ops) == 1 << 20
    # norandommap: no map, the sizes as drawn (only the region's end cuts), blocks come back
    ops = _plan("[j]\nrw=randread\nnorandommap\nbssplit=4k/50:64k/50\nnumber_ios=400\n", 0, 1 << 20)
    assert all(n in (4096, 65536) or p + n == 1 << 20 for _, _, p, n in ops)
    covered = [b for _, _, p, n in ops for b in range(p // 4096, (p + n) // 4096)]
    assert len(covered) > len(set(covered))


def test_norandommap_and_distributions_stay_in_the_region() -> None:
    for dist in ("norandommap", "random_distribution=zipf:1.2", "random_distribution=pareto:0.2",
                 "random_distribution=normal:10", "random_distribution=zoned:60/10:30/20:10/70"):
        ops = _plan(f"[j]\nrw=randread\nbs=4k\n{dist}\n", 8192, 256 * 4096)
        assert len(ops) == 256 and all(8192 <= p < 8192 + 256 * 4096 and p % 4096 == 0 for _, _, p, _ in ops)
        if dist != "norandommap":  # skewed: some block comes back
            assert len({p for _, _, p, _ in ops}) < 256


def test_randrepeat_is_the_same_in_another_process() -> None:
    # hash() of a str differs per process; the seeds must not.
    code = ("from ioengine.bench.jobfile import parse_job_text; from ioengine.bench.ioplan import IoPlan;"
            "(j,) = parse_job_text('[j]\\nrw=randrw\\nbs=4k\\n', 't');"
            "p = IoPlan(j, [(0, 1 << 22)], 1, time_based=False);"
            "print([p.next() for _ in range(50)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(outs) == 1


def test_bssplit_and_bsrange_sizes() -> None:
    # norandommap: the sizes as drawn (the random map cuts them: see above); at the region's end
    # fio's get_next_buflen takes a size of the split that fits, never a shortened one
    ops = _plan("[j]\nrw=randwrite\nnorandommap\nbssplit=4k/75:64k/25\n", 0, 8 << 20)
    sizes = [n for _, _, _, n in ops]
    assert set(sizes) == {4096, 65536} and all(p + n <= 8 << 20 for _, _, p, n in ops)
    assert 0.6 < sizes.count(4096) / len(sizes) < 0.9
    ops = _plan("[j]\nrw=read\nbsrange=4k-16k\n", 0, 1 << 20)
    assert {n for _, _, _, n in ops} <= {4096, 8192, 12288, 16384} and sum(n for *_, n in ops) >= 1 << 20


def test_bssplit_near_the_end_takes_a_size_that_fits() -> None:
    # fio's get_next_buflen: a drawn size past the region's end gives way to the next one of the
    # split (sorted by percentage) that fits, else another draw; never a size outside the split.
    # 12k, then 8k left: fio issues 4k + 4k where shortening gave one 8k.
    ops = _plan("[j]\nrw=write\nbssplit=4k/10:12k/90\nloops=200\n", 0, 20 << 10)
    assert {n for *_, n in ops} == {4096, 12288} and sum(n for *_, n in ops) == 200 * (20 << 10)
    assert all(p + n <= 20 << 10 for _, _, p, n in ops)
    # bsrange: drawn again until it fits
    ops = _plan("[j]\nrw=write\nbsrange=4k-12k\nloops=200\n", 0, 20 << 10)
    assert {n for *_, n in ops} <= {4096, 8192, 12288} and all(p + n <= 20 << 10 for _, _, p, n in ops)


def test_bssplit_sizes_round_down_to_the_smallest() -> None:
    # fio's get_next_buflen rounds every size down to a multiple of min_bs (the split's smallest,
    # a 0% entry included, as bssplit_ddir sets min_bs), capped at max_bs: 6k is issued as 4k.
    ops = _plan("[j]\nrw=randwrite\nnorandommap\nbssplit=4k/50:6k/50\n", 0, 1 << 20)
    assert {n for *_, n in ops} == {4096}
    (job,) = parse_job_text("[j]\nrw=randwrite\nbssplit=2k/0:6k/50:8k/50\n", "t.fio")
    assert job.block_sizes(1) == (2048, 8192)
    # (a region so large that no I/O meets its end, where no drawn size may fit: fio would draw
    # forever, ioengine gives up after 1000 draws and issues what fits)
    plan = IoPlan(job, [(0, 1 << 40)], 1, time_based=True)
    assert {plan.next()[3] for _ in range(2000)} == {6144, 8192}  # type: ignore[index]


JESD219 = "512/4:1k/1:1536/1:2k/1:2560/1:3k/1:3584/1:4k/67:8k/10:16k/7:32k/3:64k/3"


@pytest.mark.parametrize(("option", "want"), [
    # each size as often as its percentage says (one draw per I/O, as fio's get_next_buflen)
    (f"bssplit={JESD219}", {b: p / 100 for b, p in
                            ((512, 4), (1024, 1), (1536, 1), (2048, 1), (2560, 1), (3072, 1), (3584, 1),
                             (4096, 67), (8192, 10), (16384, 7), (32768, 3), (65536, 3))}),
    ("bssplit=4k/20:8k/20:16k/20:32k/20:64k/20", {4096 << i: 0.2 for i in range(5)}),
    # fio: min + max * U rounded down to a multiple of min, capped at max
    ("bsrange=4k-10k", {4096: 0.4, 8192: 0.4, 10240: 0.2}),
])
def test_block_size_mix_follows_the_weights(option: str, want: dict[int, float]) -> None:
    (job,) = parse_job_text(f"[j]\nrw=randwrite\nnorandommap\n{option}\n", "t.fio")
    plan = IoPlan(job, [(0, 1 << 40)], 1, time_based=True)  # so large that no I/O is cut at its end
    draws = 40000
    sizes = [plan.next()[3] for _ in range(draws)]  # type: ignore[index]
    mean = sum(b * p for b, p in want.items())
    assert sum(sizes) / draws == pytest.approx(mean, rel=0.03)
    assert set(sizes) == set(want)
    for b, p in want.items():
        assert sizes.count(b) / draws == pytest.approx(p, abs=0.01)


def test_sequential_job_reads_its_region_once_in_order() -> None:
    ops = _plan("""\
        [j]
        rw=read
        bs=128k
        iodepth=3
    """, 4096, 1 << 20)
    assert [p for _, _, p, _ in ops] == [4096 + i * (128 << 10) for i in range(8)]


def test_io_size_and_loops_wrap_around() -> None:
    ops = _plan("[j]\nrw=write\nbs=64k\nio_size=512k\nloops=2\n", 0, 256 << 10)
    pos = [p for _, _, p, _ in ops]
    assert len(pos) == 16 and set(pos) == {0, 64 << 10, 128 << 10, 192 << 10}
    ops = _plan("[j]\nrw=randread\nbs=4k\nnumber_ios=7\n", 0, 1 << 20)
    assert len(ops) == 7


# ------------------------------------------------------------------------------- errors



@pytest.mark.parametrize("body", [
    "rw=read", "rw=write", "rw=randread", "rw=randwrite\nnorandommap", "rw=randread\nrandom_distribution=zipf:1.1",
    "rw=randread\nblockalign=8k", "rw=read\nloops=3", "rw=randread\nloops=2", "rw=read\nnumber_ios=50",
    "rw=read\nio_size=300k", "rw=read\nsize=250k", "rw=randread\nsize=250k",
])
@pytest.mark.parametrize("time_based", [False, True])
def test_the_plain_path_plans_what_the_general_one_does(body: str, time_based: bool) -> None:
    # IoPlan.next's short path for one file, one direction and one size: the same I/Os, in the
    # same order, as the general path it skips (forced here by turning the short one off).
    (job,) = parse_job_text(f"[j]\nbs=4k\nsize=256k\ndirect=1\nrandrepeat=1\n{body}\n", "t.fio")
    region = [(8192, job.size or 0)]
    plans = [IoPlan(job, region, 1, time_based=time_based, file_sizes=[1 << 20]) for _ in range(2)]
    assert plans[0]._plain
    plans[1]._plain = False
    runs = []
    for plan in plans:
        plan.prepare()
        out = []
        while len(out) < 400 and (io := plan.next()) is not None:
            out.append(io)
        runs.append(out)
    assert runs[0] == runs[1] and len(runs[0]) > 40


def _issued(plan: IoPlan, batch: int, limit: int = 2000) -> list[object]:
    """The I/Os of ``plan`` as the job's slots issue them (runjob's plain slot when ``batch``:
    take()'s queue first, next() when it gives nothing), with the cache drops among them."""
    out: list[object] = []
    q = plan.queued
    while len(out) < limit:
        if batch and q:
            x = q.popleft()
            out.append((x & 1, x >> 1, plan.plain) if plan.mixed else (plan.direction, x, plan.plain))
            continue
        if plan.drop:
            out.append("drop")
            plan.drop.clear()
        if batch and plan.take(batch):
            continue
        if batch and plan.drop:
            continue
        io = plan.next()
        if io is None:
            break
        if plan.drop:
            out.append("drop")
            plan.drop.clear()
        out.append((io[0], io[2], io[3]))
    return out


@pytest.mark.parametrize("body", [
    "rw=read", "rw=write", "rw=randread", "rw=randwrite\nnorandommap", "rw=randread\nrandom_distribution=zipf:1.1",
    "rw=read\nloops=3", "rw=randread\nloops=2", "rw=read\nnumber_ios=50", "rw=randread\nnumber_ios=50",
    "rw=read\nio_size=300k", "rw=read\nsize=250k", "rw=randread\nsize=250k", "rw=randread\nbs=8k,8k",
    "rw=read:-8k", "rw=read:8k", "rw=write:4k\nsize=250k", "rw=read:-12k\nio_size=1m",
    "rw=randrw", "rw=randrw\nrwmixread=70\nnumber_ios=300", "rw=rw", "rw=rw\nrwmixread=30\nsize=250k",
    "rw=randrw\nnorandommap", "rw=randrw\nrandom_distribution=zipf:1.2", "rw=randrw\nbs=4k,8k",
])
@pytest.mark.parametrize("direct", [0, 1])
@pytest.mark.parametrize("time_based", [False, True])
def test_queued_ios_are_what_next_gives(body: str, direct: int, time_based: bool) -> None:
    # IoPlan.take: the plain slots' batches of I/Os (direction and offset) are those next() gives
    # one by one, in order, and a buffered time_based job's cache drop (each new random pass)
    # comes before the first I/O of the pass, as with next().
    (job,) = parse_job_text(f"[j]\nbs=4k\nsize=256k\ndirect={direct}\n{body}\n", "t.fio")
    region = [(8192, job.size or 0)]
    plans = [IoPlan(job, region, 1, time_based=time_based, file_sizes=[1 << 20]) for _ in range(2)]
    for plan in plans:
        plan.prepare()
    # not taken in batches: a loop's reopen (buffered, not time_based), sizes per direction
    assert (plans[0].plain is None) == ((not direct and not time_based and "loops" in body) or "bs=4k,8k" in body)
    one, queued = _issued(plans[0], 0), _issued(plans[1], 16)
    assert one == queued and len(one) >= 16
    if time_based and not direct and body in ("rw=randread", "rw=randread\nsize=250k", "rw=randread\nbs=8k,8k",
                                              "rw=randrw"):
        assert one.count("drop") > 3  # a new pass of the random map: the case take() holds an offset for


def test_unsupported_option_exit_2_names_line(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [global]
        size=1m

        [j]
        rw=randread
        zonemode=zbd
        ioengine=libhdfs
    """)
    assert main(["run", str(job)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{job}, line 6: zonemode=zbd (zoned block devices" in err and "is not supported by ioengine" in err
    assert f"{job}, line 7: ioengine=libhdfs is not supported" in err


def test_missing_job_file(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(scratch / "nope.fio")]) == 2
    err = capsys.readouterr().err
    assert "nope.fio" in err and "cannot read job file" in err


def test_missing_data_file_without_size(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [j]
        direct=1
        rw=read
        filename={dir}/absent.dat
    """)
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert "absent.dat" in err and "does not exist" in err and "size=" in err
    assert not (scratch / "absent.dat").exists()


def test_direct_0_and_unset_direct_run_buffered(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fio's default (and direct=0 / buffered=1): the page cache, any block size and offset; the
    data proven by verify."""
    job = write_job(scratch, """\
        [j]
        size=300000
        offset=1001
        bs=1000
        rw=randwrite
        verify=md5
        filename={dir}/d.dat
        direct=0
    """)
    assert main(["run", str(job)]) == 0
    out, err = capsys.readouterr()
    assert "err= 0" in out and "O_DIRECT" not in err + out
    assert "verify" not in err
    job = write_job(scratch, """\
        [j]
        size=256k
        bs=3000
        rw=read
        filename={dir}/d.dat
        buffered=1
        invalidate=0
    """)
    assert main(["run", str(job)]) == 0
    assert "O_DIRECT" not in "".join(capsys.readouterr())


@pytest.mark.parametrize("engine, blocking", [(None, True), ("psync", True), ("sync", True), ("pvsync2", True),
                                              ("libaio", True), ("io_uring", False), ("posixaio", False)])
def test_buffered_writes_block_where_fios_engine_does(engine: str | None, blocking: bool) -> None:
    """A buffered write ext4 cannot take without blocking is made at the call (ioengine.pagecache)
    for the engines whose fio job blocks for it: the sync family and libaio (io_submit does it in
    place); io_uring and posixaio hand it to a worker, as the ring does."""
    text = "[j]\nrw=write\nsize=1m\n" + (f"ioengine={engine}\n" if engine else "")
    (job,) = parse_job_text(text, "t.fio")
    opts = open_options(job)
    assert opts.buffered and opts.blocking_buffered_writes == blocking
    (job,) = parse_job_text(text + "direct=1\n", "t.fio")
    assert not open_options(job).buffered


def test_direct_writes_at_the_logical_block(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """direct=1 with bs as small as the kernel takes for O_DIRECT (the logical block), as fio:
    not refused for being smaller than the physical block."""
    import ioengine

    async def logical() -> int:
        flags = ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE
        async with await ioengine.open_file_dma(scratch / "probe", flags) as f:
            return f.disk_read_dma_alignment

    bs = ioengine.run(logical())
    job = write_job(scratch, f"""\
        [j]
        direct=1
        size=256k
        bs={bs}
        rw=randwrite
        verify=crc32
        filename={{dir}}/d.dat
    """)
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    assert "err= 0" in capsys.readouterr().out


def test_unaligned_block_size_is_refused_before_running(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [j]
        direct=1
        size=1m
        bs=1000
        filename={dir}/d.dat
    """)
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "bs=1000 is not a multiple of" in err


def test_groups_and_entries_follow_fio() -> None:
    jobs = parse_job_text(textwrap.dedent("""\
        [a]
        [b]
        stonewall
        group_reporting
        numjobs=3
        [c]
        group_reporting
    """), "t.fio")
    assert [[j.name for j in g] for g in groups_of(jobs)] == [["a"], ["b", "c"]]
    a, b, c = jobs
    runs = [[CloneRun(a, 0, 0, "x")], [*(CloneRun(b, i, 1, "x") for i in range(3)), CloneRun(c, 0, 1, "x")]]
    # group_reporting merges the group's clones into one entry named after the first job
    assert [(e.name, e.groupid, len(e.clones)) for e in entries_of(runs)] == [("a", 0, 1), ("b", 1, 4)]
    with pytest.raises(JobFileError):
        parse_job_text("[j]\ntime_based\n", "t.fio")


@pytest.mark.parametrize("sizes", [False, True])
def test_report_statistics_are_the_plain_formulas(sizes: bool) -> None:
    # The report's latency statistics and bandwidth/IOPS windows (summed in C for millions of
    # I/Os) against the textbook formulas over the same samples, two clones merged.
    import math
    import random

    from ioengine.bench.jobreport import SAMPLE_MS

    (job,) = parse_job_text("[j]\nrw=randread\nbs=4k\ngroup_reporting\nnumjobs=2\n", "t.fio")
    rng = random.Random(3)
    step = SAMPLE_MS * 1_000_000
    clones = [CloneRun(job, i, 0, "x") for i in range(2)]
    for c in clones:
        c.runtime_ns = 5 * step + 123
        t = 0
        for _ in range(20_000):
            t += rng.randrange(130_000)
            c.lat[0].append(rng.randrange(20_000, 900_000))
            c.at[0].append(t)
        if sizes:
            c.sizes = tuple(__import__("array").array("q") for _ in range(3))
            c.sizes[0].extend(rng.choice((4096, 8192)) for _ in range(20_000))
    (entry,) = entries_of([clones])
    rep = entry.direction(0)
    lat = sorted(x for c in clones for x in c.lat[0])
    mean = sum(lat) / len(lat)
    sd = math.sqrt(sum((x - mean) ** 2 for x in lat) / (len(lat) - 1))
    lo, hi, got_mean, got_sd = rep.stats()
    assert (lo, hi) == (lat[0], lat[-1]) and got_mean == pytest.approx(mean, rel=1e-12)
    assert got_sd == pytest.approx(sd, rel=1e-9)
    ios = [0] * 5
    nbytes = [0] * 5
    for c in clones:
        for i, t in enumerate(c.at[0]):
            if t // step < 5:
                ios[t // step] += 1
                nbytes[t // step] += c.sizes[0][i] if c.sizes is not None else 4096
    assert rep.iops_samples == [n * 1000.0 / SAMPLE_MS for n in ios]
    assert rep.bw_samples == [b * 1000.0 / SAMPLE_MS / 1024 for b in nbytes]


@pytest.mark.skipif(__import__("shutil").which("fio") is None, reason="fio is not installed (apt install fio)")
def test_same_job_file_same_work_as_fio(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Size-based jobs do a fixed amount of work, so fio and ioengine must report the same counts.
    from ioengine.bench.fio_json import run_fio

    job = write_job(scratch, """\
        [global]
        direct=1
        size=1m
        directory={dir}

        [sw]
        rw=write
        bs=128k,128k
        offset=256k
        group_reporting
        numjobs=2

        [rr]
        rw=randread
        bs=4k
        iodepth=4
        numjobs=2
        [mixed]
        stonewall
        rw=randrw
        rwmixread=100
        bs=8k
    """)
    theirs = run_fio([str(job)], timeout=60)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    ours = parse_fio_json(capsys.readouterr().out)

    def shape(res):
        return [(j.name, j.groupid, j.error, j.read.total_ios, j.read.io_bytes, j.write.total_ios, j.write.io_bytes)
                for j in res.jobs]

    assert shape(ours) == shape(theirs)
    assert shape(ours) == [("sw", 0, 0, 0, 0, 16, 2 << 20), ("rr", 0, 0, 256, 1 << 20, 0, 0),
                           ("rr", 0, 0, 256, 1 << 20, 0, 0), ("mixed", 1, 0, 128, 1 << 20, 0, 0)]


@pytest.mark.parametrize(("direct", "level"), [(0, "1"), (1, "8")])
def test_buffered_libaio_has_one_request_in_flight_as_in_fio(
        scratch: Path, capsys: pytest.CaptureFixture[str], direct: int, level: str) -> None:
    # Linux completes a buffered libaio request inside io_submit: fio's job never has two in flight
    # (its HOWTO: libaio queues only with direct=1), and with O_DIRECT it keeps its iodepth.
    job = write_job(scratch, f"""\
        [a]
        ioengine=libaio
        iodepth=8
        direct={direct}
        rw=randread
        bs=4k
        size=1m
        filename={{dir}}/aio.dat
        """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    out, err = capsys.readouterr()
    j = json.loads(out)["jobs"][0]
    assert j["read"]["total_ios"] == 256
    assert max(j["iodepth_level"], key=lambda k: j["iodepth_level"][k]) == level
    assert ("use libaio without direct=1" in err) == (direct == 0)
