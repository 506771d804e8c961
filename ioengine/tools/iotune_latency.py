"""iotune --latency-map: read latency under mixed load, over a grid of (read IOPS %, write bandwidth %).

Each cell runs, for ``--latency-map-seconds``, random reads issued open-loop at a share of the
calibrated read IOPS (request k is due at start + k/rate, whatever the latencies: paced workers share
one schedule, so the generator costs one sleep per request, not a task) beside sequential writes
paced at a share of the calibrated write bandwidth. Read latency is timed from submission to
completion (not from the due time: asyncio's timers wake up to ~1 ms late, which would swamp a
fast disk's figure); when the engine falls behind the schedule the achieved rate says so. The first
fifth of each cell is a warm-up whose latencies are dropped. Results: p50/p95/p99 per cell, a CSV,
and a PNG heatmap of p95 (matplotlib, Agg backend).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ioengine
from ioengine import OpenFlags
from iosched import DiskProperties

from .iotune_device import DeviceInfo, IotuneError
from .iotune_measure import OFFSET_TABLE, Workload, _fill_random, random_offsets
from .iotune_report import Reporter

#: Warm-up share of each cell (latencies dropped).
CELL_WARMUP_SHARE = 0.2
#: Most sequential writes the paced writer keeps in flight.
WRITERS = 4


@dataclass(slots=True)
class Cell:
    read_pct: float
    write_pct: float
    read_iops_target: float
    read_iops_achieved: float
    write_bw_target: float  # bytes/s
    write_bw_achieved: float
    p50_us: float
    p95_us: float
    p99_us: float
    samples: int

    @property
    def behind(self) -> bool:
        """The reads fell more than 5 % short of their schedule (the latency then understates the load)."""
        return self.read_iops_achieved < 0.95 * self.read_iops_target


def _pct(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return math.nan
    i = min(len(sorted_ns) - 1, max(0, math.ceil(len(sorted_ns) * p / 100) - 1))
    return sorted_ns[i] / 1000


async def _paced(op: Callable, bufs: list, pos_of: Callable[[int], int], rate: float, start: float, end: float,
                 record_from: float | None, lat: list[int]) -> int:
    """Issue request k at start + k/rate on any idle worker, until ``end``; returns the completions."""
    nxt = 0
    completed = 0
    clock = time.perf_counter
    clock_ns = time.perf_counter_ns
    rec_ns = None if record_from is None else int(record_from * 1e9)

    async def worker(buf: Any) -> None:
        nonlocal nxt, completed
        while True:
            k = nxt
            nxt = k + 1
            due = start + k / rate
            if due >= end:
                return
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            t = clock_ns()
            await op(pos_of(k), buf)
            if rec_ns is not None and t >= rec_ns:
                lat.append(clock_ns() - t)
            completed += 1

    tasks = [asyncio.create_task(worker(b)) for b in bufs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return completed


async def _cell(f: ioengine.File, size: int, rd: Workload, wr: Workload, read_rate: float, write_rate: float,
                seconds: float, seed: int) -> tuple[list[int], int, int, float]:
    """(read latencies ns, reads, writes, measured seconds) of one cell."""
    offs = random_offsets(size // rd.bs, rd.bs, seed)
    mask = OFFSET_TABLE - 1
    wblocks = size // wr.bs
    rbufs = [f.allocate_buffer(rd.bs) for _ in range(rd.depth)]
    wbufs = [f.allocate_buffer(wr.bs) for _ in range(WRITERS)] if write_rate > 0 else []
    _fill_random(wbufs, seed)
    lat: list[int] = []
    clock = time.perf_counter
    start = clock() + 0.01
    end = start + seconds
    warm_end = start + seconds * CELL_WARMUP_SHARE
    # perf_counter and perf_counter_ns share a clock: the warm-up boundary compares in ns
    jobs = [_paced(f.read_future, rbufs, lambda k: offs[k & mask], read_rate, start, end, warm_end, lat)]
    if write_rate > 0:
        jobs.append(_paced(f.write_future, wbufs, lambda k: (k % wblocks) * wr.bs, write_rate, start, end, None, []))
    try:
        counts = await asyncio.gather(*jobs)
    finally:
        for b in rbufs + wbufs:
            b.release()
    reads = counts[0]
    writes = counts[1] if len(counts) > 1 else 0
    return lat, reads, writes, end - start


async def _map(path: str, size: int, rd: Workload, wr: Workload, props: DiskProperties,
               grid: tuple[tuple[float, ...], tuple[float, ...]], seconds: float, rep: Reporter) -> list[Cell]:
    cells: list[Cell] = []
    async with await ioengine.open_file_dma(path, OpenFlags.RW) as f:
        for wp in grid[1]:
            for rp in grid[0]:
                read_rate = props.read_iops * rp / 100
                write_bw = props.write_bandwidth * wp / 100
                write_rate = write_bw / wr.bs
                with rep.task(f"latency map: reads {rp:g} %, writes {wp:g} %", seconds):
                    lat, reads, writes, took = await _cell(f, size, rd, wr, read_rate, write_rate, seconds,
                                                           seed=len(cells) + 11)
                lat.sort()
                cell = Cell(rp, wp, read_rate, reads / took, write_bw, writes * wr.bs / took,
                            _pct(lat, 50), _pct(lat, 95), _pct(lat, 99), len(lat))
                cells.append(cell)
                rep.info(f"  reads {rp:>5g} % ({read_rate:>9,.0f} IOPS), writes {wp:>5g} % "
                         f"({write_bw / 1e6:>7,.0f} MB/s): read p50 {cell.p50_us:,.0f} us, p95 "
                         f"{cell.p95_us:,.0f} us, p99 {cell.p99_us:,.0f} us"
                         + (f"  [reads achieved {cell.read_iops_achieved:,.0f} IOPS: behind schedule]"
                            if cell.behind else ""))
        await f.flush()
    return cells


def write_csv(cells: list[Cell], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["read_pct", "write_pct", "read_iops_target", "read_iops_achieved", "write_mb_per_s_target",
                    "write_mb_per_s_achieved", "read_p50_us", "read_p95_us", "read_p99_us", "read_samples"])
        for c in cells:
            w.writerow([f"{c.read_pct:g}", f"{c.write_pct:g}", f"{c.read_iops_target:.0f}",
                        f"{c.read_iops_achieved:.0f}", f"{c.write_bw_target / 1e6:.1f}",
                        f"{c.write_bw_achieved / 1e6:.1f}", f"{c.p50_us:.1f}", f"{c.p95_us:.1f}",
                        f"{c.p99_us:.1f}", c.samples])


def write_png(cells: list[Cell], grid: tuple[tuple[float, ...], tuple[float, ...]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reads, writes = grid
    z = [[math.nan] * len(writes) for _ in reads]
    notes = [[""] * len(writes) for _ in reads]
    for c in cells:
        i, j = reads.index(c.read_pct), writes.index(c.write_pct)
        z[i][j] = c.p95_us
        notes[i][j] = f"{c.p95_us:,.0f}" + ("*" if c.behind else "")
    fig, ax = plt.subplots(figsize=(1.6 * len(writes) + 3, 1.1 * len(reads) + 2), dpi=100)
    im = ax.imshow(z, origin="lower", cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(writes)), [f"{w:g} %" for w in writes])
    ax.set_yticks(range(len(reads)), [f"{r:g} %" for r in reads])
    ax.set_xlabel("write load (% of calibrated write bandwidth)")
    ax.set_ylabel("read load (% of calibrated read IOPS)")
    finite = [v for row in z for v in row if not math.isnan(v)]
    mid = (min(finite) + max(finite)) / 2 if finite else 0
    for i in range(len(reads)):
        for j in range(len(writes)):
            ax.text(j, i, notes[i][j], ha="center", va="center",
                    color="black" if not math.isnan(z[i][j]) and z[i][j] > mid else "white")
    fig.colorbar(im, ax=ax, label="read p95 latency (µs)")
    ax.set_title(title + ("\n* reads fell behind their schedule" if any(c.behind for c in cells) else ""),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency_map(args: argparse.Namespace, path: str, size: int, wls: dict[str, Workload], props: DiskProperties,
                dev: DeviceInfo, rep: Reporter, run_engine: Callable) -> list[Cell]:
    prefix = args.latency_map
    for ext in (".png", ".csv"):
        if prefix.endswith(ext):
            prefix = prefix[: -len(ext)]
    grid = args.latency_map_grid
    rep.info(f"Latency map: {len(grid[0])} x {len(grid[1])} cells of {args.latency_map_seconds:g} s "
             f"(read {wls['rand_read'].bs} B random at a share of {props.read_iops:,.0f} IOPS; writes "
             f"{wls['seq_write'].bs} B sequential at a share of {props.write_bandwidth / 1e6:,.0f} MB/s)")
    cells = run_engine(_map(path, size, wls["rand_read"], wls["seq_write"], props, grid, args.latency_map_seconds,
                            rep), args.reactor_options)
    csv_path, png_path = prefix + ".csv", prefix + ".png"
    try:
        write_csv(cells, csv_path)
    except OSError as e:
        raise IotuneError(f"cannot write the latency map {csv_path!r}: {e.strerror or e}") from None
    rep.info(f"Wrote {csv_path}")
    try:
        write_png(cells, grid, png_path, f"iotune latency map: {dev.names} under {props.mountpoint}")
    except ImportError:
        rep.warn("matplotlib is not installed: no heatmap (pip install matplotlib); the CSV has the figures")
    except OSError as e:
        raise IotuneError(f"cannot write the latency map {png_path!r}: {e.strerror or e}") from None
    else:
        rep.info(f"Wrote {png_path}")
    return cells
