"""Two io classes competing for one disk: the share each gets, on the real disk.

    python scripts/shares.py --iops 60000 [--adaptive] [--wait F] [--wakeup-budget N] [--share]
                             [--in-disk-goals G] [--anticipate] [--tasks 32[:32]]
                             [--shares 400:100] [--seconds 3]

Each class runs ``--tasks`` tasks awaiting 4k random dma_reads of .scratch/bench.dat (make it
with `ioengine-bench compare`); the disk is described to the scheduler as ``--iops`` (reads and
writes), so the token bucket throttles below that and the engine may be the bottleneck above
it. Prints each class's reads/s, the ratio and the total, after a 0.5 s warm-up.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import ioengine
from ioengine import OpenFlags


async def measure(path: str, shares: tuple[float, float], tasks: tuple[int, int],
                  seconds: float) -> tuple[float, float]:
    f = await ioengine.open_file_dma(path, OpenFlags.RO)
    blocks = os.path.getsize(path) // 4096
    classes = [ioengine.IoClass(f"c{i}", shares=s) for i, s in enumerate(shares)]
    counts = [0, 0]
    stop = False

    async def worker(k: int, seed: int) -> None:
        rnd = random.Random(seed)
        b = f.allocate_buffer(4096)
        while not stop:
            await f.dma_read(rnd.randrange(blocks) * 4096, b, io_class=classes[k])
            counts[k] += 1

    ts = [asyncio.ensure_future(worker(k, k * 1000 + i)) for k in (0, 1) for i in range(tasks[k])]
    await asyncio.sleep(0.5)
    c0, t0 = list(counts), time.perf_counter()
    await asyncio.sleep(seconds)
    c1, t1 = list(counts), time.perf_counter()
    stop = True
    await asyncio.gather(*ts)
    await f.close()
    return (c1[0] - c0[0]) / (t1 - t0), (c1[1] - c0[1]) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=".scratch/bench.dat")
    ap.add_argument("--iops", type=int, required=True)
    ap.add_argument("--adaptive", action="store_true", help="io_adaptive_in_disk=True")
    ap.add_argument("--wait", type=float, default=0.0, help="io_fair_wait_fraction")
    ap.add_argument("--wakeup-budget", type=int, default=0, help="io_wakeup_budget (0: off)")
    ap.add_argument("--share", action=argparse.BooleanOptionalAction, default=True,
                    help="io_share_in_disk (default on, as the engine's)")
    ap.add_argument("--anticipate", action="store_true", help="io_anticipate=True")
    ap.add_argument("--in-disk-goals", type=float, default=None, help="io_in_disk_goals (default: the reactor's)")
    ap.add_argument("--share-goals", type=float, default=None,
                    help="io_share_in_disk_goals: the bound busy classes split (default: the reactor's)")
    ap.add_argument("--tasks", default="32", help="tasks per class: N, or N:M for the first and the second")
    ap.add_argument("--shares", default="400:100")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    hi, lo = (float(x) for x in a.shares.split(":"))
    nt = [int(x) for x in a.tasks.split(":")]
    tasks = (nt[0], nt[-1])
    props = (f"disks:\n  - mountpoint: /\n    read_iops: {a.iops}\n    read_bandwidth: 1500000000\n"
             f"    write_iops: {a.iops}\n    write_bandwidth: 1000000000\n")
    r0, r1 = ioengine.run(measure(a.file, (hi, lo), tasks, a.seconds), io_properties=props,
                          io_adaptive_in_disk=a.adaptive, io_fair_wait_fraction=a.wait,
                          io_wakeup_budget=a.wakeup_budget, io_share_in_disk=a.share, io_anticipate=a.anticipate,
                          **({} if a.in_disk_goals is None else {"io_in_disk_goals": a.in_disk_goals}),
                          **({} if a.share_goals is None else {"io_share_in_disk_goals": a.share_goals}))
    print(f"iops={a.iops} adaptive={a.adaptive} wait={a.wait} wakeup_budget={a.wakeup_budget} share={a.share} "
          f"anticipate={a.anticipate} in_disk_goals={a.in_disk_goals} tasks={a.tasks} "
          f"shares={a.shares}: "
          f"{r0:,.0f}/s + {r1:,.0f}/s = {r0 + r1:,.0f}/s, ratio {r0 / max(r1, 1e-9):.2f}")


if __name__ == "__main__":
    main()
