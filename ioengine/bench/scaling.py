"""ioengine-bench scaling: one shard against N shards at the same total queue depth, next to fio.

    python -m ioengine.bench scaling [--depth 64] [--smp 2] [--rows randread,randwrite] [--rounds 3]

For each 4k random row, four runs per round on the same file, alternating: ioengine on one
shard at ``--depth``, fio with one job at ``--depth``, ioengine on ``--smp`` shards at
depth/N each, fio with ``numjobs=N`` at depth/N each. Medians are printed: IOPS, CPU-µs per
I/O (all processes' user + system over all I/Os), the scaling (N shards / one) of each engine,
and each ioengine run as a multiple of fio's in the same configuration.
"""
from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from ..options import ReactorOptions
from .compare import Sample, run_fio_side, run_ioengine_side
from .workloads import Pattern, ensure_bench_file

K4 = 4096
ROWS = {"randread": "4k random read", "randwrite": "4k random write"}


@dataclass(slots=True)
class Cell:
    iops: float
    cpu_us: float


def _cell(samples: list[Sample]) -> Cell:
    return Cell(statistics.median(s.iops for s in samples), statistics.median(s.cpu_us_per_io for s in samples))


def main_scaling(path: str, size: int, seconds: float, rounds: int, depth: int, smp: int, rows: list[str],
                 options: ReactorOptions | None = None, out: TextIO = sys.stdout) -> dict[str, Any]:
    if smp < 2:
        raise ValueError(f"--smp must be at least 2 (the shards to compare with one), got {smp}")
    if depth % smp:
        raise ValueError(f"--depth {depth} does not split evenly over {smp} shards")
    for r in rows:
        if r not in ROWS:
            raise ValueError(f"unknown row {r!r}; expected one of {', '.join(ROWS)}")
    opts = options or ReactorOptions()
    ensure_bench_file(path, size)
    print(f"one shard at QD{depth} against {smp} shards at QD{depth // smp} each (fio: numjobs=1 / {smp}); "
          f"{rounds} round(s) of {seconds:g} s per run, alternating; medians", file=out, flush=True)
    results: dict[str, Any] = {}
    for name in rows:
        one, split = Pattern(name, K4, depth), Pattern(name, K4, depth // smp)
        runs: dict[str, list[Sample]] = {"ioengine 1": [], "fio 1": [], f"ioengine {smp}": [], f"fio {smp}": []}
        for _ in range(rounds):
            runs["ioengine 1"].append(run_ioengine_side(path, size, one, seconds, opts, latency=False))
            runs["fio 1"].append(run_fio_side(path, size, one, seconds, opts))
            runs[f"ioengine {smp}"].append(run_ioengine_side(path, size, split, seconds, opts, latency=False,
                                                             smp=smp))
            runs[f"fio {smp}"].append(run_fio_side(path, size, split, seconds, opts, smp=smp))
        med = {k: _cell(v) for k, v in runs.items()}
        results[name] = {k: {"iops": c.iops, "cpu_us": c.cpu_us} for k, c in med.items()}
        e1, f1, en, fn = (med[k] for k in ("ioengine 1", "fio 1", f"ioengine {smp}", f"fio {smp}"))
        print(f"\n{ROWS[name]}, total depth {depth}:", file=out)
        print(f"  {'':22} {'IOPS':>10} {'CPU-us/IO':>10} {'x fio':>7}", file=out)
        print(f"  {'ioengine, 1 shard':22} {e1.iops:10,.0f} {e1.cpu_us:10.2f} {e1.iops / f1.iops:6.2f}x", file=out)
        print(f"  {'fio, 1 job':22} {f1.iops:10,.0f} {f1.cpu_us:10.2f}", file=out)
        label = f"ioengine, {smp} shards"
        print(f"  {label:22} {en.iops:10,.0f} {en.cpu_us:10.2f} {en.iops / fn.iops:6.2f}x", file=out)
        print(f"  {f'fio, {smp} jobs':22} {fn.iops:10,.0f} {fn.cpu_us:10.2f}", file=out)
        print(f"  scaling ({smp} / 1): ioengine {en.iops / e1.iops:.2f}x, fio {fn.iops / f1.iops:.2f}x", file=out,
              flush=True)
    return results
