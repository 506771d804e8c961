"""ioengine-bench sched --smp N: the disk scheduler with the load spread over N shards.

Each shard is a process with its own reactor and io queues; with io_properties the queues of
one disk share its bucket, in-disk bound and io class shares (smp_io_group, iosched.io_group).
With the calibration of ``sched``:
 (a) shares across shards: a class with shares 400 backlogged on shard 0, one with 100 on
     shard 1 (4k random reads, 32 and 128 outstanding each), with the calibration and with the
     disk described at half of it → the achieved ratio (goal 4 ± 10 %); and the same without
     the io group (each shard throttling alone), for contrast;
 (b) isolation across shards: 4k reads at 50 % of the calibrated read IOPS on shard 0 against
     backlogged 128 KiB sequential writes on shard 1 → read p95 against the reads alone;
 (e) one disk, many shards: 4k random reads at QD32 on every shard, the disk described at half
     of its calibration (so the bucket is the limit) → total IOPS on N shards against one shard
     (goal 1.0: N shards together get what one gets, not N times as much), with and without
     the io group.
Rounds alternate between the variants; medians are printed.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any, TextIO

import ioengine
from ioengine import IoClass, OpenFlags, smp
from iosched import DiskProperties, dump_io_properties
from iosched.sim import scaled_properties

from .loads import BLOCK, ISOLATION_WRITE_DEPTH, WRITE_BS, open_loop_reads, saturate

#: Outstanding requests per class in (a).
SHARES_DEPTHS = (32, 128)


async def _load(path: str, seconds: float, depth: int, bs: int, write: bool, sequential: bool,
                name: str, shares: float, start: float) -> int:
    """On this shard: ``depth`` workers back to back from ``start`` (a shared monotonic time) for
    ``seconds``, in io class ``name``; the requests completed."""
    io_class = IoClass(name, shares)
    flags = OpenFlags.RW if write else OpenFlags.RO
    async with await ioengine.open_file_dma(path, flags) as f:
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return await saturate(f, seconds, depth, bs, write, sequential, io_class)


async def _reads(path: str, seconds: float, rate: float, start: float) -> list[int]:
    async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return await open_loop_reads(f, rate, seconds, IoClass("bench-reader", 1000))


async def _spread(loads: list[tuple[int, Any, tuple]]) -> list[Any]:
    """Run ``fn(*args, start)`` on each (shard, fn, args) at once; their results in order."""
    start = time.monotonic() + 0.2  # every shard has opened its file by then
    return list(await asyncio.gather(*(smp.submit_to(shard, fn, *args, start) for shard, fn, args in loads)))


def _run(n: int, loads: list[tuple[int, Any, tuple]], props: str, group: bool = True) -> list[Any]:
    return ioengine.run(_spread, loads, smp=n, io_properties=props, smp_io_group=group)


def _pct(xs: list[int], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100))] / 1000 if s else float("nan")


def main_sched_smp(path: str, disk: DiskProperties, n: int, seconds: float, rounds: int,
                   out: TextIO = sys.stdout) -> dict[str, Any]:
    """Sections (a), (b), (e) above on ``n`` shards, with ``disk`` as the calibration."""

    props = dump_io_properties([disk])
    half_disk = scaled_properties(disk, 0.5)
    half = dump_io_properties([half_disk])
    results: dict[str, Any] = {"smp": n}

    def shares_loads(depth: int) -> list[tuple[int, Any, tuple]]:
        return [(0, _load, (path, seconds, depth, BLOCK, False, False, "bench-hi", 400)),
                (1, _load, (path, seconds, depth, BLOCK, False, False, "bench-lo", 100))]

    print("(a) shares 4:1 across shards: class 400 on shard 0, class 100 on shard 1, saturating 4k random reads "
          "(goal 4 ± 10 %)", file=out)
    variants = [(f"{d} per class, {label}", d, p, True) for d in SHARES_DEPTHS
                for label, p in (("calibrated", props), ("disk at half", half))]
    variants.append((f"{SHARES_DEPTHS[0]} per class, calibrated, no io group", SHARES_DEPTHS[0], props, False))
    ratios: dict[str, list[float]] = {v[0]: [] for v in variants}
    for _ in range(rounds):
        for label, depth, p, group in variants:
            hi, lo = _run(n, shares_loads(depth), p, group)
            ratios[label].append(hi / max(lo, 1))
    results["shares"] = {}
    for label, rs in ratios.items():
        m = statistics.median(rs)
        results["shares"][label] = m
        print(f"    {label}: {m:.2f} (rounds: {', '.join(f'{r:.2f}' for r in rs)})", file=out)

    rate = disk.read_iops * 0.5
    alone_lat = _run(n, [(0, _reads, (path, seconds, rate))], props)[0]
    mixed = _run(n, [(0, _reads, (path, seconds, rate)),
                     (1, _load, (path, seconds, ISOLATION_WRITE_DEPTH, WRITE_BS, True, True, "bench-writer", 100))],
                 props)
    mixed_lat, writes = mixed
    iso = {"alone_p95": _pct(alone_lat, 95), "mixed_p95": _pct(mixed_lat, 95),
           "achieved_ratio": len(mixed_lat) / (rate * seconds), "write_mb_per_s": writes * WRITE_BS / seconds / 1e6}
    results["isolation"] = iso
    print(f"(b) reads at 50 % of {disk.read_iops:.0f} IOPS on shard 0 vs backlogged 128k writes on shard 1: "
          f"p95 {iso['mixed_p95']:.0f} us vs {iso['alone_p95']:.0f} us alone "
          f"({iso['mixed_p95'] / iso['alone_p95']:.1f}x), reads achieved/requested {iso['achieved_ratio']:.3f}, "
          f"writes {iso['write_mb_per_s']:.0f} MB/s", file=out)

    one = [(0, _load, (path, seconds, 32, BLOCK, False, False, "bench", 1000))]
    every = [(k, _load, (path, seconds, 32, BLOCK, False, False, "bench", 1000)) for k in range(n)]
    counts: dict[str, list[float]] = {"one": [], "group": [], "apart": []}
    for _ in range(rounds):
        counts["one"].append(sum(_run(1, one, half)) / seconds)
        counts["group"].append(sum(_run(n, every, half)) / seconds)
        counts["apart"].append(sum(_run(n, every, half, group=False)) / seconds)
    med = {k: statistics.median(v) for k, v in counts.items()}
    results["one_disk"] = {"one_shard_iops": med["one"], "group_iops": med["group"], "apart_iops": med["apart"],
                           "calibrated_iops": half_disk.read_iops}
    print(f"(e) one disk, {n} shards: 4k random reads QD32 per shard, the disk described at half its calibration "
          f"({half_disk.read_iops:.0f} IOPS):\n"
          f"    one shard {med['one']:.0f} IOPS; {n} shards {med['group']:.0f} ({med['group'] / med['one']:.2f}x one; "
          f"goal 1.0); {n} shards without the io group {med['apart']:.0f} ({med['apart'] / med['one']:.2f}x)",
          file=out)
    return results


def main_null(requests: int = 300_000, batch: int = 32, repeat: int = 3) -> None:
    """iosched's null-device rows (scheduler CPU per request) with the shards' shared-memory disk
    state (native/io_group.c), beside iosched's own: what sharing a disk costs per request.

        python -m ioengine.bench.sched_smp
    """
    import os

    from iosched.bench import main as iosched_main
    from iosched.bench import print_shared_rows

    from ..smp.io_group import ShmIoGroup, group_bytes

    iosched_main(["--null", "--requests", str(requests), "--batch", str(batch), "--repeat", str(repeat)])
    fd = os.memfd_create("ioengine-bench-group", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, group_bytes())
        dev = iter(range(1 << 30))

        def make() -> Any:
            return ShmIoGroup(fd, 0, 0, 1).disk(next(dev) % 16)

        print_shared_rows(requests, batch, repeat, make, "shared memory (smp)")
    finally:
        os.close(fd)


if __name__ == "__main__":
    main_null()
