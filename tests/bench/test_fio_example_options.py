"""ioengine-bench run: the options fio's own examples use (rw=...:N, strided zones, flow, wait_for,
exitall, steady state, latency_target, dedupe, NUMA, tiobench's options) — with fio's semantics.

The offset sequences below were recorded from fio 3.33 (``write_lat_log`` + ``log_offset=1``) on
the same job; where fio draws random offsets only their structure can match (the generators differ).
"""
from __future__ import annotations

import json
import struct
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

from ioengine.bench.__main__ import main
from ioengine.bench.ioplan import IoPlan
from ioengine.bench.jobfile import JobFileError, parse_job_text
from ioengine.bench.runjob import _LatencyTarget

K = 1024


def write_job(d: Path, text: str) -> Path:
    p = d / "job.fio"
    p.write_text(textwrap.dedent(text).format(dir=d))
    return p


def offsets(body: str, *, start: int = 0, length: int = 256 * K, file_size: int | None = None,
            count: int = 100) -> list[int]:
    (job,) = parse_job_text("[j]\nbs=4k\n" + textwrap.dedent(body), "t.fio")
    plan = IoPlan(job, [(start, length)], 1, time_based=False, file_sizes=[file_size or start + length])
    out: list[int] = []
    while len(out) < count and (io := plan.next()) is not None:
        out.append(io[2])
    return out


def test_rw_modifiers_issue_fios_offsets() -> None:
    # rw=read:-8k (backwards-read.fio): 0, then from the end down, 4k a step.
    assert offsets("rw=read:-8k\n", count=6) == [0, 248 * K, 244 * K, 240 * K, 236 * K, 232 * K]
    # with an offset, fio's first I/O already rewinds (its last_pos quirk): as fio 3.33 did.
    back = offsets("rw=read:-8k\nnumber_ios=4\n", start=16 * K, length=256 * K)
    assert back == [248 * K, 244 * K, 240 * K, 236 * K]
    # rw=write:8k (holes, cross-stripe-verify.fio): 8k skipped after every write; the pass ends
    # when the next offset leaves the region (22 writes here, as fio).
    holes = offsets("rw=write:8k\n", start=12 * K, length=256 * K)
    assert holes == [12 * K + i * 12 * K for i in range(22)]
    # rw=randread:4: a random offset, then 3 following it (rw_sequencer=sequential) or the same
    # offset 3 more times (identical).
    seq = offsets("rw=randread:4\nnumber_ios=12\n")
    ident = offsets("rw=randread:4\nrw_sequencer=identical\nnumber_ios=12\n")
    for run in range(3):
        a = seq[4 * run:4 * run + 4]
        assert a == [a[0] + i * 4 * K for i in range(4)]
        b = ident[4 * run:4 * run + 4]
        assert b == [b[0]] * 4
    with pytest.raises(JobFileError, match="rw=randread:-4"):
        parse_job_text("[j]\nrw=randread:-4\n", "t.fio")


def test_strided_zones_issue_fios_offsets() -> None:
    # zonemode=strided (disk-zone-profile.fio): zonesize bytes of a zone, then skip zoneskip.
    assert offsets("rw=read\nzonemode=strided\nzonesize=8k\nzoneskip=16k\nio_size=64k\n") == \
        [0, 4 * K, 24 * K, 28 * K, 48 * K, 52 * K, 72 * K, 76 * K, 96 * K, 100 * K, 120 * K, 124 * K,
         144 * K, 148 * K, 168 * K, 172 * K]
    # zonesize > zonerange: each zone is read twice before moving on.
    assert offsets("rw=read\nzonemode=strided\nzonesize=32k\nzonerange=16k\nzoneskip=16k\nio_size=96k\n") == \
        [0, 4 * K, 8 * K, 12 * K] * 2 + [32 * K, 36 * K, 40 * K, 44 * K] * 2 + [64 * K, 68 * K, 72 * K, 76 * K] * 2
    # random inside the zone: each zone's 16k once, zone after zone.
    rnd = offsets("rw=randread\nzonemode=strided\nzonesize=16k\nzoneskip=32k\nio_size=64k\n")
    for z in range(4):
        assert sorted(rnd[4 * z:4 * z + 4]) == [48 * K * z + i * 4 * K for i in range(4)]
    with pytest.raises(JobFileError, match="zonemode=zbd"):
        parse_job_text("[j]\nzonemode=zbd\n", "t.fio")


def test_zoned_distribution_shares_the_rest_and_tiobench_options() -> None:
    # rand-zones.fio: "20/" takes what the other zones leave, as fio's split parser does.
    (job,) = parse_job_text("[j]\nrw=randread\nrandom_distribution=zoned:50/5:30/15:20/\n", "t.fio")
    assert job.random_zones == ((50.0, 5.0), (30.0, 15.0), (20.0, 80.0))
    (job,) = parse_job_text("[j]\nrw=randread\nrandom_distribution=zoned:60/10:20/:20/\n", "t.fio")
    assert job.random_zones == ((60.0, 10.0), (20.0, 45.0), (20.0, 45.0))
    # threads= is fio's tiobench profile option: fio 3.33 accepts it and stays in processes.
    (job,) = parse_job_text("[global]\nthreads=1\n[j]\n", "t.fio")
    assert job.thread is False


def test_latency_target_finds_the_deepest_depth_meeting_it() -> None:
    (job,) = parse_job_text("[j]\nioengine=libaio\ndirect=1\niodepth=32\nlatency_target=1ms\nlatency_window=100ms\n"
                            "latency_percentile=99\n", "t.fio")
    lt = _LatencyTarget(job, 0)
    now, ios = 0, 0
    depths: list[int] = []
    while not lt.done and ios < 100_000:
        # A device whose latency passes the target beyond depth 6.
        lat = 500_000 if lt.qd <= 6 else 2_000_000
        now += lat // max(1, lt.qd)
        ios += 1
        assert not lt.completed(lat, now, ios)
        lt.quiesce = False
        if not depths or depths[-1] != lt.qd:
            depths.append(lt.qd)
    assert lt.done and lt.qd == 6
    assert depths[:6] == [1, 2, 4, 8, 6, 7]  # doubling, then bisecting (fio's lat_target_success/failed)
    # At depth 1 with a 100 % target, one late I/O fails the job (fio's lat_fatal, ETIMEDOUT).
    (job,) = parse_job_text("[j]\nioengine=libaio\niodepth=8\nlatency_target=100\n", "t.fio")
    assert _LatencyTarget(job, 0).completed(200_000, 1, 1)


def test_flow_keeps_the_weights_and_wait_for_orders_jobs(scratch: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=1m
        ioengine=libaio
        iodepth=4
        [heavy]
        rw=randread
        filename={dir}/f.dat
        time_based
        runtime=400ms
        flow=3
        [light]
        rw=randread
        filename={dir}/f.dat
        time_based
        runtime=400ms
        flow=1
        [writer]
        rw=write
        filename={dir}/v.dat
        verify=crc32
        do_verify=0
        [checker]
        rw=read
        filename={dir}/v.dat
        verify=crc32
        wait_for=writer
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    jobs = {j["jobname"]: j for j in json.loads(capsys.readouterr().out)["jobs"]}
    heavy, light = jobs["heavy"]["read"]["total_ios"], jobs["light"]["read"]["total_ios"]
    assert light > 20 and 2.8 < heavy / light < 3.2
    # The checker read only after the writer had written every block: all verified.
    assert jobs["checker"]["error"] == 0 and jobs["checker"]["read"]["total_ios"] == 256


def test_exitall_steady_state_rate_and_dedupe(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=1m
        filename={dir}/f.dat
        [short]
        rw=read
        number_ios=50
        exitall
        [long]
        rw=randread
        time_based
        runtime=60
        rate_iops=100
        ioengine=libaio
        iodepth=8
        io_submit_mode=offload
        [steady]
        stonewall
        rw=randread
        time_based
        runtime=60
        ss=iops:1000%
        ss_dur=500ms
        ss_interval=250ms
        [dedupe]
        stonewall
        rw=write
        filename={dir}/d.dat
        ioengine=libaio
        iodepth=8
        dedupe_percentage=50
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    captured = capsys.readouterr()
    assert "io_submit_mode=offload" in captured.err
    jobs = {j["jobname"]: j for j in json.loads(captured.out)["jobs"]}
    # exitall: 'short' ending ended 'long' long before its runtime; one pacer per job, not per
    # in-flight I/O, kept it near 100 IOPS.
    assert jobs["long"]["job_runtime"] < 30_000
    assert jobs["long"]["read"]["total_ios"] <= 1 + 1.3 * jobs["long"]["job_runtime"] / 10
    # steady state (the limit always met): ended after its window, attained.
    ss = jobs["steady"]["steadystate"]
    assert ss["attained"] == 1 and ss["ss"] == "iops%" and jobs["steady"]["job_runtime"] < 30_000
    # dedupe_percentage=50: about half the written blocks repeat an earlier one.
    data = (scratch / "d.dat").read_bytes()
    blocks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert 0.35 < len(set(blocks)) / len(blocks) < 0.65


def test_buffer_contents_refill_and_compress(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # refill_buffers: every write new random bytes; buffer_compress_percentage=50: half of every
    # buffer_compress_chunk zeros, redrawn per write, so the file compresses to about half (fio's
    # init.c turns refill_buffers on with it unless the job sets it).
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=256k
        rw=write
        [refill]
        filename={dir}/r.dat
        refill_buffers
        [compress]
        filename={dir}/c.dat
        buffer_compress_percentage=50
        buffer_compress_chunk=1k
        [given]
        filename={dir}/g.dat
        buffer_compress_percentage=50
        refill_buffers=0
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    # refill_buffers given as 0 wins over the compression's implied refill: one buffer repeated
    data = (scratch / "g.dat").read_bytes()
    assert len({data[i:i + 4096] for i in range(0, len(data), 4096)}) == 1
    data = (scratch / "r.dat").read_bytes()
    blocks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert len(data) == 256 * K and len(set(blocks)) == len(blocks)
    assert len(zlib.compress(data)) >= len(data)
    data = (scratch / "c.dat").read_bytes()
    assert len(data) == 256 * K
    assert all(data[c:c + 512] == bytes(512) for c in range(0, len(data), K))
    assert 0.45 < len(zlib.compress(data)) / len(data) < 0.6


def test_writes_are_scrambled_as_fio_does_unless_told_not_to(scratch: Path) -> None:
    # fio's scramble_buffers (on by default): one buffer, but every 512-byte sector of each write
    # carries its file offset in one of its first eight cache lines and the write's time at the
    # end of the first, so no two writes are alike; scramble_buffers=0 repeats the buffer as is.
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=128k
        rw=randwrite
        [scrambled]
        filename={dir}/s.dat
        [plain]
        filename={dir}/p.dat
        scramble_buffers=0
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    data = (scratch / "p.dat").read_bytes()
    assert len({data[i:i + 4096] for i in range(0, len(data), 4096)}) == 1
    data = (scratch / "s.dat").read_bytes()
    blocks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert len(set(blocks)) == len(blocks) == 32
    for b, block in enumerate(blocks):
        sectors = [block[k:k + 512] for k in range(0, 4096, 512)]
        lines = {ln for ln in range(8) if struct.unpack_from("<Q", sectors[0], ln * 64)[0] == b * 4096}
        assert lines, f"block {b}: its offset in no cache line of its first sector"
        line = lines.pop()
        stamps = {struct.unpack_from("<QQ", sec, 48) for sec in sectors}
        assert len(stamps) == 1 and next(iter(stamps))[1] < 10**9  # one write's time, (sec, nsec)
        for k, sec in enumerate(sectors):
            assert struct.unpack_from("<Q", sec, line * 64)[0] == b * 4096 + k * 512


@pytest.mark.parametrize("body", ["rw=randwrite\nnumber_ios=50", "rw=randwrite\ntime_based\nruntime=200ms",
                                  "rw=write\nsize=200k", "rw=randread\ndirect=0\ntime_based\nruntime=200ms",
                                  "rw=randrw\nnumber_ios=50", "rw=rw\nrwmixread=30\nnumber_ios=50"])
def test_plain_slots_do_what_the_general_ones_do(scratch: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    # runjob's plain slot (offsets taken from the plan in batches, no per-I/O tests of unused
    # options) against the general loop forced on the same job: the same blocks written, the
    # same counts, the same cache drops (size 256k at 4k: a random pass every 64 reads).
    from ioengine.bench import runjob
    from ioengine.bench.jobfile import parse_job_file

    runs = []
    for plain in (True, False):
        calls = _count_invalidations(monkeypatch)
        if not plain:
            monkeypatch.setattr(runjob._Clone, "_slot", lambda self, w: self._worker(w))
        used = []
        real = runjob._Clone._plain_worker

        def spy(self: object, w: int, real: Any = real, used: list[int] = used) -> Any:
            used.append(w)
            return real(self, w)
        monkeypatch.setattr(runjob._Clone, "_plain_worker", spy)
        d = scratch / ("plain" if plain else "general")
        d.mkdir()
        job = write_job(d, "[j]\ndirect=1\nbs=4k\nsize=256k\niodepth=4\nioengine=io_uring\n"
                           "filename={dir}/f.dat\n" + body)
        (cr,) = [c for g in runjob.run_jobs(parse_job_file(job)).groups for c in g]
        assert not cr.error and bool(used) == plain
        data = (d / "f.dat").read_bytes()
        stamped = sorted(b for b in range(len(data) // 4096)
                         if any(struct.unpack_from("<Q", data, b * 4096 + ln * 64)[0] == b * 4096 for ln in range(8)))
        runs.append((cr, stamped, len(calls)))
        monkeypatch.undo()
    (p, p_blocks, p_drops), (g, g_blocks, g_drops) = runs
    assert p_blocks == g_blocks
    if "number_ios" in body or "size=200k" in body:
        assert p.ios(0) + p.ios(1) == g.ios(0) + g.ios(1) == (50 if "number_ios" in body else 50)
        assert p.io_bytes == g.io_bytes
    if "direct=0" in body:  # one drop at the start, then one per pass of 64 reads, both ways
        for cr, drops in ((p, p_drops), (g, g_drops)):
            assert drops == 1 + (cr.ios(0) - 1) // 64 and cr.ios(0) > 3 * 64, (drops, cr.ios(0))


def test_numa_nodes_must_be_the_machines(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [j]
        direct=1
        size=64k
        filename={dir}/n.dat
        numa_cpu_nodes=999
    """)
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert "NUMA node 999 is out of range" in err and "fio refuses it as well" in err and "Traceback" not in err


def test_trimwrite_plan_trims_then_writes_each_block() -> None:
    (job,) = parse_job_text("[j]\nrw=randtrimwrite\nbs=4k\n", "t.fio")
    plan = IoPlan(job, [(0, 64 * K)], 1, time_based=False)
    ops = []
    while (io := plan.next()) is not None:
        ops.append(io)
    assert [d for d, *_ in ops] == [2, 1] * 16  # as much trimmed as written (fio's trimwrite)
    assert all(ops[i][2] == ops[i + 1][2] for i in range(0, 32, 2))
    assert sorted(p for d, _, p, _ in ops if d == 2) == [i * 4 * K for i in range(16)]


def test_trims_on_a_file_fail_as_fios_and_continue_on_error(scratch: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # fio trims with BLKDISCARD, which a regular file refuses (ENOTTY, err=25); so does ioengine.
    # continue_on_error=write with ignore_error=,ENOTTY goes on after it (trims count as writes).
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=64k
        filename={dir}/t.dat
        ioengine=libaio
        iodepth=2
        [stop]
        rw=randtrim
        [go-on]
        stonewall
        rw=trim
        continue_on_error=write
        ignore_error=,ENOTTY
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 1
    captured = capsys.readouterr()
    assert "err=25 (Inappropriate ioctl for device)" in captured.err and "Traceback" not in captured.err
    jobs = {j["jobname"]: j for j in json.loads(captured.out)["jobs"]}
    assert jobs["stop"]["error"] == 25 and "total_err" not in jobs["stop"]
    go = jobs["go-on"]
    assert go["error"] == 25 and go["first_error"] == 25 and go["total_err"] == 16  # every trim tried


def test_latency_target_job_ends_with_its_plan(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A size-based job under latency_target: slots waiting at the depth gate end with the plan
    # (they waited for the runtime before: latency-profile.fio took its whole runtime for 4096 I/Os).
    job = write_job(scratch, """\
        [j]
        direct=1
        bs=4k
        size=256k
        rw=randread
        filename={dir}/l.dat
        ioengine=libaio
        iodepth=16
        runtime=60
        latency_target=10s
        latency_window=10s
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    (j,) = json.loads(capsys.readouterr().out)["jobs"]
    assert j["read"]["total_ios"] == 64 and j["job_runtime"] < 30_000 and j["latency_depth"] == 1


def test_latency_target_holds_its_depth_without_a_wake_up_per_io(scratch: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Depth 1 under test (a window longer than the job), 16 slots: never two I/Os admitted at
    # once, and a slot whose I/O completed goes on through the gate itself; the waiting slots
    # are not woken for a place they cannot take (they were, once per I/O).
    from ioengine.bench import runjob

    seen = {"admitted": 0, "woken": 0}
    gate, wake = runjob._Clone._depth_gate, runjob._Clone._gate_wake

    async def admitting(self: runjob._Clone) -> None:
        await gate(self)
        if not (self._plan_done or self.stop):  # (at the end every slot passes, to end)
            seen["admitted"] = max(seen["admitted"], self._admitted)

    def waking(self: runjob._Clone) -> None:
        before = len(self._gate_waiters)
        wake(self)
        seen["woken"] += before - len(self._gate_waiters)

    monkeypatch.setattr(runjob._Clone, "_depth_gate", admitting)
    monkeypatch.setattr(runjob._Clone, "_gate_wake", waking)
    job = write_job(scratch, """\
        [j]
        direct=1
        bs=4k
        size=1m
        rw=randread
        filename={dir}/l.dat
        ioengine=libaio
        iodepth=16
        latency_target=10s
        latency_window=10s
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    (j,) = json.loads(capsys.readouterr().out)["jobs"]
    assert j["read"]["total_ios"] == 256 and j["latency_depth"] == 1
    assert seen["admitted"] == 1
    assert seen["woken"] <= 2 * 16  # the waiting slots at the plan's end, not one per I/O


def test_smp_spreads_clones_over_shards(scratch: Path) -> None:
    # --smp 2: clones run on both shards (fio runs a process per clone); a job sharing state with
    # others (here exitall, in a group of its own) stays on shard 0; dedupe_global jobs spread, their working set drawn
    # alike on every shard, so each repeats the other's buffers (fio's t/fio-dedupe on the two
    # files together finds more duplicates than on either alone).
    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs
    from ioengine.options import SmpOptions

    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=256k
        ioengine=libaio
        iodepth=2
        [spread]
        filename={dir}/s.dat
        rw=randread
        numjobs=2
        time_based
        runtime=300ms
        [pinned]
        stonewall
        filename={dir}/s.dat
        rw=read
        exitall
        number_ios=10000
        [dedupe]
        stonewall
        rw=write
        size=1m
        filename_format={dir}/d$jobnum.dat
        numjobs=2
        dedupe_percentage=50
        dedupe_mode=working_set
        dedupe_working_set_percentage=25
        dedupe_global=1
        allrandrepeat=1
    """)
    run = run_jobs(parse_job_file(job), smp=SmpOptions(smp=2))
    clones = [c for g in run.groups for c in g]
    spread = [c for c in clones if c.job.name == "spread"]
    assert sorted(c.shard for c in spread) == [0, 1] and all(c.total_ios > 10 and not c.error for c in spread)
    (pinned,) = [c for c in clones if c.job.name == "pinned"]
    assert pinned.shard == 0 and run.shards == 2
    dedupe = [c for c in clones if c.job.name == "dedupe"]
    assert sorted(c.shard for c in dedupe) == [0, 1] and all(c.total_ios == 256 and not c.error for c in dedupe)
    files = [(scratch / f"d{i}.dat").read_bytes() for i in range(2)]
    sets = [{f[i:i + 4096] for i in range(0, len(f), 4096)} for f in files]
    # half the writes repeat one of 64 working-set buffers: ~128 + 55 distinct per file (allrandrepeat:
    # the same draws every run; fio draws buffer contents from the OS without it, and so would this)
    assert all(len(s) < 200 for s in sets)
    # shared across the files: the working set is the same on both shards
    assert len(sets[0] & sets[1]) > 20  # ~47 expected; none if each shard drew its own


def test_concurrent_clones_pick_the_default_shards() -> None:
    # `run` without --smp: one shard per clone that runs at once, at most one per CPU (fio runs a
    # process per clone); stonewall groups run one after another.
    import os

    from ioengine.bench.runjob import auto_shards, concurrent_clones

    jobs = parse_job_text("[a]\nrw=read\nnumjobs=3\n[b]\nrw=write\n[c]\nstonewall\nrw=read\n", "t.fio")
    assert concurrent_clones(jobs) == 4
    ncpu = len(os.sched_getaffinity(0))
    smp = auto_shards(jobs)
    assert (smp.smp if smp else 1) == min(4, ncpu)
    assert auto_shards(jobs, cpuset=str(min(os.sched_getaffinity(0)))) is None  # one CPU: one reactor
    assert auto_shards(parse_job_text("[a]\nrw=read\n[b]\nstonewall\nrw=read\n", "t.fio")) is None


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_run_spreads_concurrent_clones_by_default(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=256k
        filename={dir}/a.dat
        ioengine=io_uring
        iodepth=2
        time_based
        runtime=200ms
        rw=randread
        [spread]
        numjobs=2
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "they run on 2 shards" in err
    jobs = json.loads(out)["jobs"]
    assert len(jobs) == 2 and all(j["read"]["total_ios"] > 0 and j["error"] == 0 for j in jobs)
    assert main(["run", str(job), "--smp", "1"]) == 0
    out, err = capsys.readouterr()
    assert "shards" not in err and "in one reactor" in out


def test_new_group_starts_a_reporting_group_as_fio(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # exitwhat.fio's shape: new_group makes its own groupid (and group_reporting entry) without
    # waiting; stonewall starts the next; group_reporting merges a groupid's jobs (fio 3.33 did so).
    job = write_job(scratch, """\
        [global]
        direct=1
        bs=4k
        size=64k
        filename={dir}/g.dat
        group_reporting
        number_ios=5
        [a]
        rw=read
        [b]
        new_group
        rw=randread
        numjobs=2
        [c]
        stonewall
        rw=read
        [d]
        rw=randread
    """)
    assert main(["run", str(job), "--output-format", "json"]) == 0
    got = [(j["jobname"], j["groupid"], j["read"]["total_ios"]) for j in json.loads(capsys.readouterr().out)["jobs"]]
    assert got == [("a", 0, 5), ("b", 1, 10), ("c", 2, 10)]


def _count_invalidations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    from ioengine.bench import runjob

    calls: list[tuple[int, int]] = []
    real = runjob._invalidate

    def counting(fd: int, start: int, length: int, path: str) -> None:
        calls.append((start, length))
        real(fd, start, length, path)
    monkeypatch.setattr(runjob, "_invalidate", counting)
    return calls


@pytest.mark.parametrize(("body", "per_pass"), [
    # fio's loop_cache_invalidate: at each pass of a time_based buffered job (get_next_rand_block
    # when the random map is used up, get_next_seq_offset back at the start with one file) ...
    ("rw=randread\ntime_based\nruntime=300ms\n", True),
    ("rw=read\ntime_based\nruntime=300ms\n", True),
    # ... only with invalidate=1, without O_DIRECT, with the random map; not for backwards holes
    ("rw=randread\ntime_based\nruntime=300ms\ndirect=1\n", False),
    ("rw=randread\ntime_based\nruntime=300ms\ninvalidate=0\n", False),
    ("rw=randread\ntime_based\nruntime=300ms\nnorandommap\n", False),
    ("rw=read:-8k\ntime_based\nruntime=300ms\n", False),
])
def test_time_based_buffered_job_drops_the_cache_at_each_pass(
        scratch: Path, monkeypatch: pytest.MonkeyPatch, body: str, per_pass: bool) -> None:
    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs

    calls = _count_invalidations(monkeypatch)
    job = write_job(scratch, "[j]\nbs=4k\nsize=64k\noffset=8k\nfilename={dir}/c.dat\n" + body)
    (cr,) = [c for g in run_jobs(parse_job_file(job)).groups for c in g]
    assert not cr.error and cr.ios(0) > 3 * 16
    if per_pass:  # once when the job starts, then before the first I/O of every later pass
        assert len(calls) == 1 + (cr.ios(0) - 1) // 16
        assert set(calls) == {(8 * K, 64 * K)}
    else:
        assert len(calls) == (0 if "direct=1" in body or "invalidate=0" in body else 1)


def test_each_loop_drops_the_cache(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # loops=N: fio closes and reopens the files each loop (td_io_open_file drops their cache).
    from ioengine.bench.jobfile import parse_job_file
    from ioengine.bench.runjob import run_jobs

    calls = _count_invalidations(monkeypatch)
    job = write_job(scratch, "[j]\nbs=4k\nsize=128k\nrw=randread\nloops=3\nnrfiles=2\ndirectory={dir}\n")
    (cr,) = [c for g in run_jobs(parse_job_file(job)).groups for c in g]
    assert not cr.error and cr.ios(0) == 3 * 32
    assert len(calls) == 3 * 2  # each file, at each of the 3 loops' start


@pytest.mark.parametrize(("body", "advice"), [
    ("rw=randread\n", "POSIX_FADV_RANDOM"),  # fio's default fadvise_hint=1: by the pattern
    ("rw=read\n", "POSIX_FADV_SEQUENTIAL"),
    ("rw=randwrite\ndirect=1\n", "POSIX_FADV_RANDOM"),  # fio advises O_DIRECT files too
    ("rw=read\nfadvise_hint=random\n", "POSIX_FADV_RANDOM"),
    ("rw=randread\nfadvise_hint=sequential\n", "POSIX_FADV_SEQUENTIAL"),
    ("rw=randread\nfadvise_hint=0\n", None),
])
def test_each_file_is_advised_at_open_as_fio_does(
        scratch: Path, monkeypatch: pytest.MonkeyPatch, body: str, advice: str | None) -> None:
    # fio's td_io_open_file: with the page cache, random advice turns readahead off, so a buffered
    # 4k random read costs one 4k read from the disk, as in fio (fio-rand-read.fio: 10x fio without it)
    import os

    from ioengine.bench import runjob
    from ioengine.bench.jobfile import parse_job_file

    calls: list[tuple[int, int, int]] = []
    real = runjob._advise

    def recording(fd: int, start: int, length: int, flag: int) -> None:
        calls.append((start, length, flag))
        real(fd, start, length, flag)
    monkeypatch.setattr(runjob, "_advise", recording)
    job = write_job(scratch, "[j]\nbs=4k\nsize=64k\noffset=8k\nnrfiles=2\ndirectory={dir}\n" + body)
    (cr,) = [c for g in runjob.run_jobs(parse_job_file(job)).groups for c in g]
    assert not cr.error and cr.ios(0) + cr.ios(1) > 0
    if advice is None:
        assert calls == []
    else:
        assert len(calls) == 2 and {flag for *_, flag in calls} == {getattr(os, advice)}


def test_a_bad_fadvise_hint_is_refused(scratch: Path) -> None:
    from ioengine.bench.jobfile import JobFileError, parse_job_file

    job = write_job(scratch, "[j]\nbs=4k\nsize=64k\nrw=read\nfadvise_hint=maybe\nfilename={dir}/a.dat\n")
    with pytest.raises(JobFileError, match="fadvise_hint"):
        parse_job_file(job)
