"""The disk scheduler on the real disk: shares, isolation, overhead (issue: iosched benchmark).

    python -m ioengine.bench sched [--seconds 3] [--file .scratch/bench.dat] [--calibration iotune|builtin]

Calibrates the disk with iotune (or a short built-in measurement, or takes --io-properties-file), then:
 (a) two classes of saturating 4k random reads at shares 4:1 → the achieved ratio, with 128 and
     32 workers per class, at the calibration and with the disk described at half of it (and the
     engine-bound case, 32 at the calibration, again with io_wakeup_budget=0: the loop not shared
     by shares, and without io_share_in_disk: the in-disk bound not split by shares); and a
     class with 1 % of the shares (10 vs 990) → its share of 200 ms
     windows over its entitlement, without and with io_anticipate;
 (b) a protected class of 4k random reads at 50 % of the calibrated read IOPS (shares 1000)
     against backlogged 128 KiB sequential writes (shares 100) → read p95/p99 against the
     reads alone, achieved/requested IOPS, and the disk's utilisation by the cost model;
 (c) one class alone through the scheduler against the same load unscheduled → IOPS ratio, at
     4k QD32 (the engine is CPU-bound: the headline), 4k QD4 and 128k sequential QD4.
"""
from __future__ import annotations

import asyncio
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Any

import ioengine
from ioengine import IoClass, OpenFlags
from iosched import READ, WRITE, CostModel, DiskProperties, dump_io_properties, load_io_properties
from iosched.sim import scaled_properties

from .fio_json import FioError, run_fio
from .loads import BLOCK, ISOLATION_WRITE_DEPTH, WRITE_BS
from .loads import open_loop_reads as _open_loop_reads
from .loads import pct as _pct
from .loads import saturate as _saturate
from .workloads import ensure_bench_file

#: (a)'s classes: this many requests outstanding each, so that together they offer more than
#: the disk may hold (io_in_disk_goals x the latency goal: ~120 4k reads here) and the
#: scheduler, not the number of tasks, decides who goes next.
SHARES_DEPTH = 128


@dataclass(slots=True)
class Calibration:
    read_iops: float
    read_bandwidth: float
    write_iops: float
    write_bandwidth: float

    def properties(self, mountpoint: str) -> DiskProperties:
        return DiskProperties((mountpoint,), self.read_iops, self.read_bandwidth, self.write_iops, self.write_bandwidth)


async def _calibrate(path: str, seconds: float) -> Calibration:
    async with await ioengine.open_file_dma(path, OpenFlags.RW) as f:
        t = time.perf_counter()
        n = await _saturate(f, seconds, 64, BLOCK, False, False)
        read_iops = n / (time.perf_counter() - t)
        t = time.perf_counter()
        n = await _saturate(f, seconds, 4, WRITE_BS, True, True)
        write_bw = n * WRITE_BS / (time.perf_counter() - t)
        t = time.perf_counter()
        n = await _saturate(f, seconds, 4, WRITE_BS, False, True)
        read_bw = n * WRITE_BS / (time.perf_counter() - t)
        t = time.perf_counter()
        n = await _saturate(f, seconds, 64, BLOCK, True, False)
        write_iops = n / (time.perf_counter() - t)
    return Calibration(read_iops, read_bw, write_iops, write_bw)


async def _shares_test(path: str, seconds: float, depth: int = SHARES_DEPTH, shares: tuple[int, int] = (400, 100),
                       window: float = 0.2) -> list[tuple[int, int]]:
    """Two classes of saturating 4k random reads, ``depth`` workers each; the reads each class
    completed in every ``window`` of the run (after the first, a warm-up)."""
    hi, lo = IoClass(f"bench-hi-{shares[0]}", shares[0]), IoClass(f"bench-lo-{shares[1]}", shares[1])
    counts = [0, 0]
    stop = False
    async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
        nblocks = (await f.size()) // BLOCK

        async def worker(k: int, io_class: IoClass, seed: int) -> None:
            rnd = random.Random(seed)
            buf = f.allocate_buffer(BLOCK)
            while not stop:
                await f.dma_read(rnd.randrange(nblocks) * BLOCK, buf, io_class)
                counts[k] += 1
            buf.release()

        tasks = [asyncio.create_task(worker(k, c, k * 10_000 + i)) for k, c in enumerate((hi, lo))
                 for i in range(depth)]
        windows = []
        prev = (0, 0)
        for i in range(max(2, round(seconds / window))):
            await asyncio.sleep(window)
            now = (counts[0], counts[1])
            if i:
                windows.append((now[0] - prev[0], now[1] - prev[1]))
            prev = now
        stop = True
        await asyncio.gather(*tasks)
    return windows


def _ratio(windows: list[tuple[int, int]]) -> float:
    return sum(w[0] for w in windows) / max(1, sum(w[1] for w in windows))


def _small_share(windows: list[tuple[int, int]], shares: tuple[int, int]) -> tuple[float, float]:
    """The small class's share of each window over its entitlement: (median, 1st percentile)."""
    want = shares[1] / (shares[0] + shares[1])
    got = sorted(w[1] / (w[0] + w[1]) / want for w in windows if w[0] + w[1])
    if not got:
        return math.nan, math.nan
    return statistics.median(got), got[int(len(got) * 0.01)]


async def _isolation_test(path: str, seconds: float, rate: float, write_depth: int = ISOLATION_WRITE_DEPTH) -> dict:
    reader, writer = IoClass("bench-reader", 1000), IoClass("bench-writer", 100)
    async with await ioengine.open_file_dma(path, OpenFlags.RW) as f:
        c0, t0 = time.process_time(), time.perf_counter()
        alone = await _open_loop_reads(f, rate, seconds, reader)
        alone_cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
        before = _consumption()
        c0, t0 = time.process_time(), time.perf_counter()
        mixed, _ = await asyncio.gather(_open_loop_reads(f, rate, seconds, reader),
                                        _saturate(f, seconds, write_depth, WRITE_BS, True, True, writer))
        elapsed = time.perf_counter() - t0
        mixed_cpu = (time.process_time() - c0) / elapsed
        used = _consumption() - before
        nbytes = _written_bytes(writer)
    return {
        # The process's CPU over each phase, in cores: near 1, the loop itself is the reads'
        # bottleneck (a paced read is a loop turn of its own) and their latency is the loop's.
        "alone_cpu": alone_cpu, "mixed_cpu": mixed_cpu,
        "write_mb_per_s": nbytes / elapsed / 1e6,
        "alone_p95": _pct(alone, 95), "alone_p99": _pct(alone, 99),
        "mixed_p95": _pct(mixed, 95), "mixed_p99": _pct(mixed, 99),
        "achieved_ratio": len(mixed) / (rate * seconds),
        "utilisation": used / elapsed,
    }


#: (b)'s goal for the protected reads' p95, as a multiple of their p95 alone.
ISOLATION_P95_GOAL = 2.0


def _fio_isolation(path: str, size: int, seconds: float, rate: float, disk: DiskProperties,
                   write_depth: int = ISOLATION_WRITE_DEPTH) -> dict:
    """(b)'s mix run by fio, unscheduled: what the disk gives that mix, by the same cost model.

    ``write_depth`` 0 runs the reads alone. ``{"error": why}`` when fio cannot run.
    """
    reads = ["--name=reads", "--rw=randread", f"--bs={BLOCK}", "--iodepth=64", f"--rate_iops={max(1, round(rate))}"]
    writes = ["--name=writes", "--rw=write", f"--bs={WRITE_BS}", f"--iodepth={write_depth}"] if write_depth else []
    try:
        res = run_fio([
            f"--filename={path}", f"--size={size}", "--direct=1", "--ioengine=io_uring", "--time_based",
            f"--runtime={max(1, round(seconds * 1000))}ms", "--randrepeat=0", "--norandommap", *reads, *writes,
        ], timeout=seconds * 10 + 30)
        r = res.job("reads").read
        w = res.job("writes").write if write_depth else None
        p95 = r.lat_ns.percentile(95) if r.lat_ns.percentiles else r.clat_ns.percentile(95)
    except (FioError, ValueError) as e:
        return {"error": str(e).splitlines()[0]}
    cost = CostModel(disk).cost
    return {
        "write_depth": write_depth,
        "achieved_ratio": r.iops / rate,
        "utilisation": r.iops * cost(READ, BLOCK) + (w.iops * cost(WRITE, WRITE_BS) if w else 0.0),
        "write_mb_per_s": w.mb_per_s if w else 0.0,
        "p95_us": p95 / 1000,
    }


#: The write depths of (b)'s frontier: what the disk itself trades between the reads' latency
#: and its utilisation when nobody schedules the mix (fio).
FRONTIER_DEPTHS = (1, 2, 4, ISOLATION_WRITE_DEPTH)


def _fio_frontier(path: str, size: int, seconds: float, rate: float, disk: DiskProperties) -> dict:
    """(b)'s mix under fio at each of FRONTIER_DEPTHS, the reads' p95 over fio's reads alone.

    ``{"error": why}`` when fio cannot run; else ``{"alone_p95_us", "points": [...]}``, a point
    per depth as _fio_isolation's, with ``p95_ratio``, and ``best``: the point of highest
    utilisation whose p95 is within (b)'s goal (None if none is)."""
    alone = _fio_isolation(path, size, seconds, rate, disk, 0)
    if "error" in alone:
        return alone
    points = []
    for depth in FRONTIER_DEPTHS:
        pt = _fio_isolation(path, size, seconds, rate, disk, depth)
        if "error" in pt:
            return pt
        pt["p95_ratio"] = pt["p95_us"] / alone["p95_us"] if alone["p95_us"] > 0 else math.inf
        points.append(pt)
    within = [pt for pt in points if pt["p95_ratio"] <= ISOLATION_P95_GOAL and pt["achieved_ratio"] >= 0.95]
    best = max(within, key=lambda pt: pt["utilisation"]) if within else None
    return {"alone_p95_us": alone["p95_us"], "points": points, "best": best}


def _written_bytes(io_class: IoClass) -> int:
    return sum(m["classes"][io_class.name]["write_bytes"] for shard in ioengine.metrics()
               for m in shard["disks"].values() if io_class.name in m["classes"])


def _consumption() -> float:
    total = 0.0
    for shard in ioengine.metrics():
        for m in shard["disks"].values():
            if m["queue"]["throttling"]:
                total += sum(c["consumption"] for c in m["classes"].values())
    return total


#: (c)'s loads: (label, request size, depth, sequential). The first, CPU-bound for the engine,
#: is the headline; the others show the overhead where the disk, not the CPU, is the limit.
ONE_CLASS_LOADS = (
    ("4k random reads QD32", BLOCK, 32, False),
    ("4k random reads QD4", BLOCK, 4, False),
    ("128k sequential reads QD4", WRITE_BS, 4, True),
)


async def _one_class(path: str, seconds: float, bs: int = BLOCK, depth: int = 32, sequential: bool = False) -> int:
    async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
        return await _saturate(f, seconds, depth, bs, False, sequential)


def _run_one_class(path: str, seconds: float, bs: int, depth: int, sequential: bool, **options) -> tuple[int, float]:
    """(requests completed, CPU-seconds of this process spent on them: user + system)."""
    cpu = time.process_time()
    n = ioengine.run(_one_class(path, seconds, bs, depth, sequential), **options)
    return n, time.process_time() - cpu


#: How the benchmark calibrates the disk without --io-properties-file: "iotune" runs
#: tools/iotune (the disk's capacity at depth, ~12 s); "builtin" measures the engine's own
#: ceiling in a few seconds (below the disk's capacity where the engine is CPU-bound, and a
#: disk that speeds up after it shows as scheduler loss in (c)).
CALIBRATIONS = ("iotune", "builtin")
DEFAULT_CALIBRATION = "iotune"
IOTUNE_SECONDS = 12


def _iotune(path: str, out) -> str | None:
    """Run iotune in the benchmark file's directory; the io_properties file it wrote, or None."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, props = tempfile.mkstemp(prefix="sched-io_properties-", suffix=".yaml", dir=directory)
    os.close(fd)
    cmd = [sys.executable, "-m", "ioengine.tools.iotune", "--evaluation-directory", directory,
           "--properties-file", props, "--duration", str(IOTUNE_SECONDS), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        os.unlink(props)
        lines = done.stderr.strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        print(f"iotune failed ({reason}); using the built-in calibration", file=out)
        return None
    return props


def main_sched(path: str, size: int, seconds: float, properties_file: str | None, rounds: int, out=sys.stdout,
               calibration: str = DEFAULT_CALIBRATION, smp: int = 1) -> dict:
    """The sections of the module docstring; with ``smp`` > 1 those of ``sched_smp`` instead."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {calibration!r}; expected one of {', '.join(CALIBRATIONS)}")
    ensure_bench_file(path, size)
    mountpoint = os.path.dirname(os.path.abspath(path))
    source = properties_file
    made = None
    if source is None and calibration == "iotune":
        source = made = _iotune(path, out)
    if source:
        try:
            disk = load_io_properties(source)[0]
        finally:
            if made is not None:
                os.unlink(made)
        # the calibration's own numbers (per-size IOPS too), for the benchmark file's mount point
        disk = replace(disk, mountpoints=(mountpoint,), physical_block_size=None, duplex=None, rate_factor=1.0)
        how = f"iotune --duration {IOTUNE_SECONDS}" if made is not None else source
    else:
        cal = ioengine.run(_calibrate(path, min(seconds, 2.0)))
        disk = cal.properties(mountpoint)
        how = "built-in, ioengine's own ceiling"
    props = dump_io_properties([disk])
    print(f"calibration ({how}):\n{props}", file=out)
    if smp > 1:
        from .sched_smp import main_sched_smp

        return main_sched_smp(path, disk, smp, seconds, rounds, out)
    results: dict = {}
    half = dump_io_properties([scaled_properties(disk, 0.5)])
    print("(a) shares 4:1, saturating 4k random reads, two classes (goal 4 ± 5 %):", file=out)
    results["shares"] = {}
    # The last row: the same engine-bound case with the loop not shared by shares
    # (ReactorOptions.io_wakeup_budget=0), run in the same rounds so the two compare.
    for label, depth, p, extra in ((f"{SHARES_DEPTH} per class, calibrated", SHARES_DEPTH, props, {}),
                                   (f"{SHARES_DEPTH} per class, disk at half", SHARES_DEPTH, half, {}),
                                   ("32 per class, calibrated", 32, props, {}),
                                   ("32 per class, disk at half", 32, half, {}),
                                   ("32 per class, calibrated, io_wakeup_budget=0", 32, props,
                                    {"io_wakeup_budget": 0}),
                                   ("32 per class, calibrated, without io_share_in_disk", 32, props,
                                    {"io_share_in_disk": False})):
        ratios = [_ratio(ioengine.run(_shares_test(path, seconds, depth), io_properties=p, **extra))
                  for _ in range(rounds)]
        results["shares"][label] = statistics.median(ratios)
        print(f"    {label}: {statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})",
              file=out)
    results["shares_ratio"] = results["shares"][f"{SHARES_DEPTH} per class, calibrated"]
    small = (990, 10)
    one_pc: tuple[tuple[str, dict[str, Any], str], ...] = (
        ("one_percent", {}, ""), ("one_percent_anticipate", {"io_anticipate": True}, ", io_anticipate"))
    for key, opts, how in one_pc:
        shares_1pc = [_small_share(ioengine.run(_shares_test(path, seconds, 32, small), io_properties=half, **opts),
                                   small) for _ in range(rounds)]
        med, p1 = statistics.median(s[0] for s in shares_1pc), statistics.median(s[1] for s in shares_1pc)
        results[key] = {"median": med, "p1": p1}
        print(f"    1 % of the shares (10 vs 990, 32 each, disk at half{how}): the small class got {med:.2f}x its "
              f"entitlement (median of 200 ms windows; 1st percentile {p1:.2f}x; goal 0.8-1.25x, >= 0.5)", file=out)
    iso = ioengine.run(_isolation_test(path, seconds, disk.read_iops * 0.5), io_properties=props)
    frontier = _fio_frontier(path, size, seconds, disk.read_iops * 0.5, disk)
    fio_iso = frontier if "error" in frontier else frontier["points"][-1]
    iso["fio"] = fio_iso
    iso["fio_frontier"] = frontier
    results["isolation"] = iso
    print(f"(b) protected reads at 50 % of {disk.read_iops:.0f} IOPS vs backlogged 128k writes:\n"
          f"    p95 {iso['mixed_p95']:.0f} us vs {iso['alone_p95']:.0f} us alone "
          f"({iso['mixed_p95'] / iso['alone_p95']:.1f}x; goal <= {ISOLATION_P95_GOAL:g}x), "
          f"p99 {iso['mixed_p99']:.0f} us vs {iso['alone_p99']:.0f} us ({iso['mixed_p99'] / iso['alone_p99']:.1f}x)\n"
          f"    reads achieved/requested {iso['achieved_ratio']:.3f} (goal >= 0.95), "
          f"utilisation {iso['utilisation']:.2f} (goal >= 0.85), writes {iso['write_mb_per_s']:.0f} MB/s\n"
          f"    the reactor's CPU: {iso['alone_cpu']:.2f} of a core alone, {iso['mixed_cpu']:.2f} mixed "
          f"(near 1: the loop, not the disk, sets the reads' latency)", file=out)
    if "error" in fio_iso:
        print(f"    fio on the same mix: not run ({fio_iso['error']})", file=out)
    else:
        # What the disk gives this mix with nobody scheduling it, charged by the same cost model:
        # the utilisation a calibration allows on this disk, and at each write depth what the
        # reads' p95 costs for it. A scheduler only delays requests: it can reach a point on
        # this trade-off, not beyond it, so the best point within the p95 goal is the ceiling
        # (b)'s utilisation can be judged against.
        print(f"    fio on the same mix, unscheduled: reads achieved/requested {fio_iso['achieved_ratio']:.3f}, "
              f"utilisation {fio_iso['utilisation']:.2f}, writes {fio_iso['write_mb_per_s']:.0f} MB/s", file=out)
        pts = frontier["points"]
        best = frontier["best"]
        depths = "/".join(str(p["write_depth"]) for p in pts)
        p95s = "/".join(f"{p['p95_ratio']:.1f}x" for p in pts)
        p95_us = "/".join(f"{p['p95_us']:.0f}" for p in pts)
        utils = "/".join(f"{p['utilisation']:.2f}" for p in pts)
        # The ratios are to fio's own reads alone; the microseconds compare with ioengine's
        # mixed p95 above (the engine's reads alone wait longer than fio's, so the ratios differ).
        print(f"    the disk's own trade-off (fio, writes at depth {depths}): reads' p95 {p95_us} us, "
              f"{p95s} of fio's reads alone ({frontier['alone_p95_us']:.0f} us), utilisation {utils}; "
              + (f"best within p95 <= {ISOLATION_P95_GOAL:g}x: {best['utilisation']:.2f} (depth {best['write_depth']})"
                 if best else f"no depth within p95 <= {ISOLATION_P95_GOAL:g}x"), file=out)
    # (c) twice: at the calibrated rate (what a user gets; it cannot beat the calibration, so a
    # disk momentarily faster than calibrated shows as loss), and with the bucket refilled at
    # 1.5x (rate_factor) so it rarely binds: the cost of the scheduling machinery itself.
    loose = dump_io_properties([replace(disk, rate_factor=1.5)])
    print("(c) one class through the scheduler vs unscheduled (goal >= 0.97):", file=out)
    results["one_class"] = {}
    for label, bs, depth, sequential in ONE_CLASS_LOADS:
        runs: dict[str, list[tuple[int, float]]] = {"calibrated": [], "machinery": [], "raw": []}
        for _ in range(rounds):  # alternate: calibrated / loose / unscheduled (no properties)
            for key, opts in (("calibrated", {"io_properties": props}), ("machinery", {"io_properties": loose}),
                              ("raw", {})):
                runs[key].append(_run_one_class(path, seconds, bs, depth, sequential, **opts))
        count = {k: statistics.median(n for n, _ in v) for k, v in runs.items()}
        # CPU per request, the lever where the engine is CPU-bound (calmer than IOPS on a noisy host)
        cpu_us = {k: statistics.median(c / n * 1e6 for n, c in v) for k, v in runs.items()}
        m_raw = count["raw"]
        r = {"calibrated": count["calibrated"] / m_raw, "machinery": count["machinery"] / m_raw,
             "raw_iops": m_raw / seconds, "cpu_us": cpu_us}
        results["one_class"][label] = r
        print(f"    {label}: at the calibrated rate {r['calibrated']:.3f} "
              f"({count['calibrated'] / seconds:.0f} vs {r['raw_iops']:.0f} IOPS); "
              f"machinery only (rate_factor 1.5) {r['machinery']:.3f}; CPU per I/O "
              f"{cpu_us['calibrated']:.2f} / {cpu_us['machinery']:.2f} vs {cpu_us['raw']:.2f} us unscheduled", file=out)
    head = results["one_class"][ONE_CLASS_LOADS[0][0]]
    results["one_class_ratio"] = head["calibrated"]
    results["one_class_machinery_ratio"] = head["machinery"]
    print("(d) scheduler CPU per request on a null device: python -m iosched.bench --null", file=out)
    return results
