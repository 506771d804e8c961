"""Foreground reads next to a compaction-like background class (issue 17's application goal).

    python scripts/compaction.py --properties .scratch/io_properties.yaml [--wakeup-budget 4]
                                 [--share] [--in-disk-goals G] [--anticipate]
                                 [--seconds 3] [--rounds 3] [--tasks 32] [--bg-depth 4]

Foreground: ``--tasks`` tasks of 4 KiB random dma_reads of .scratch/bench.dat (make it with
`ioengine-bench compare`) in class "fg" (shares 1000). Background: ``--bg-depth`` tasks in class
"compaction" (shares 100), each reading 128 KiB sequentially from the same file and writing it to
.scratch/compaction.out, as a compaction merges logs: no bandwidth cap. Each round measures the
foreground alone, then with the background, in one process with the given io_properties (iotune's
calibration); prints foreground reads/s and p99 with/alone and the background's MB/s, per round
and the medians. The goal (issue 17): reads/s >= 0.8x and p99 <= 2x alone, the background
still moving.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

import ioengine
from ioengine import OpenFlags

BS = 4096
BG_BS = 128 * 1024
OUT_SIZE = 256 << 20


async def phase(path: str, seconds: float, tasks: int, bg_depth: int) -> tuple[float, float, float]:
    """(foreground reads/s, foreground p99 in µs, background bytes/s) over ``seconds``."""
    fg = ioengine.IoClass("fg", shares=1000)
    bg = ioengine.IoClass("compaction", shares=100)
    async with await ioengine.open_file_dma(path, OpenFlags.RO) as f, \
            await ioengine.open_file_dma(".scratch/compaction.out", OpenFlags.RW | OpenFlags.CREATE) as out:
        blocks = os.path.getsize(path) // BS
        lat: list[float] = []
        moved = 0
        stop = False
        measuring = False

        async def reader(seed: int) -> None:
            rnd = random.Random(seed)
            buf = f.allocate_buffer(BS)
            while not stop:
                t = time.perf_counter()
                await f.dma_read(rnd.randrange(blocks) * BS, buf, io_class=fg)
                if measuring:
                    lat.append(time.perf_counter() - t)

        async def compactor(k: int) -> None:
            nonlocal moved
            buf = f.allocate_buffer(BG_BS)
            pos = k * BG_BS
            span = min(os.path.getsize(path), OUT_SIZE) // BG_BS * BG_BS
            while not stop:
                await f.dma_read(pos % span, buf, io_class=bg)
                await out.dma_write(pos % span, buf, io_class=bg)
                if measuring:
                    moved += BG_BS
                pos += bg_depth * BG_BS

        ts = [asyncio.ensure_future(reader(i)) for i in range(tasks)]
        ts += [asyncio.ensure_future(compactor(k)) for k in range(bg_depth)]
        await asyncio.sleep(0.5)
        measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        dt = time.perf_counter() - t0
        measuring = False
        stop = True
        await asyncio.gather(*ts)
    lat.sort()
    p99 = lat[int(0.99 * (len(lat) - 1))] * 1e6 if lat else float("nan")
    return len(lat) / dt, p99, moved / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=".scratch/bench.dat")
    ap.add_argument("--properties", required=True, help="io_properties.yaml (iotune's calibration)")
    ap.add_argument("--wakeup-budget", type=int, default=None, help="io_wakeup_budget (default: the engine's)")
    ap.add_argument("--share", action=argparse.BooleanOptionalAction, default=True,
                    help="io_share_in_disk (default on, as the engine's)")
    ap.add_argument("--in-disk-goals", type=float, default=None, help="io_in_disk_goals (default: the engine's)")
    ap.add_argument("--anticipate", action="store_true", help="io_anticipate=True")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--bg-depth", type=int, default=4)
    a = ap.parse_args()
    opts: dict = {"io_properties_file": a.properties}
    if a.wakeup_budget is not None:
        opts["io_wakeup_budget"] = a.wakeup_budget
    if a.in_disk_goals is not None:
        opts["io_in_disk_goals"] = a.in_disk_goals
    opts["io_share_in_disk"] = a.share
    opts["io_anticipate"] = a.anticipate
    rows = []
    for r in range(a.rounds):
        alone = ioengine.run(phase(a.file, a.seconds, a.tasks, 0), **opts)
        mixed = ioengine.run(phase(a.file, a.seconds, a.tasks, a.bg_depth), **opts)
        row = (mixed[0] / alone[0], mixed[1] / alone[1], mixed[2] / 1e6)
        rows.append(row)
        print(f"round {r + 1}: fg alone {alone[0]:,.0f}/s p99 {alone[1]:,.0f} us; with compaction "
              f"{mixed[0]:,.0f}/s p99 {mixed[1]:,.0f} us; compaction {mixed[2] / 1e6:,.0f} MB/s "
              f"-> reads {row[0]:.2f}x, p99 {row[1]:.2f}x")
    med = [statistics.median(x[i] for x in rows) for i in range(3)]
    print(f"median: foreground reads {med[0]:.2f}x alone (goal >= 0.8), p99 {med[1]:.2f}x alone (goal <= 2), "
          f"compaction {med[2]:,.0f} MB/s")


if __name__ == "__main__":
    main()
