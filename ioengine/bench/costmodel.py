"""Which cost form fits this disk? Measure it, then compare iosched's two cost forms.

For each request size, fio saturates the disk with random requests of that size and reports
the IOPS it reaches; 1/IOPS is then the disk time one such request really takes. The disk is
calibrated as iotune would (4 KiB IOPS, 1 MiB bandwidth) and each form predicts that time:

* additive (Seastar): 1/iops + length/bandwidth
* max (seastar#2771): max(1/iops, length/bandwidth)

A form that fits makes ``IOPS(size) * cost(size)`` -- the share of the disk the scheduler thinks
a saturating stream of that size uses -- equal to 1 at every size. Above 1 the scheduler
throttles the disk below what it can do; below 1 it lets more in than the latency goal allows
(the flow-ratio back-off then has to catch it). The form with the smaller mean |log| error wins.

    python -m ioengine.bench.costmodel [--file F] [--seconds 1] [--rounds 3] [--direction read|write|both]

fio measures the disk rather than ioengine, whose CPU per request would bias the small sizes.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from dataclasses import dataclass

from iosched.cost import COST_FORMS, DEFAULT_COST_FORM

from .fio_json import FioError, run_fio
from .workloads import ensure_bench_file

SIZES = (4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20)
#: Bytes kept in flight per size (depth = this / size, clamped): enough to saturate a disk at
#: every size without queueing large requests far beyond the point of saturation.
IN_FLIGHT_BYTES = 4 << 20
MIN_DEPTH, MAX_DEPTH = 4, 32


@dataclass(frozen=True, slots=True)
class Point:
    size: int
    depth: int
    iops: float

    @property
    def seconds_per_request(self) -> float:
        return 1.0 / self.iops


def depth_for(size: int) -> int:
    return max(MIN_DEPTH, min(MAX_DEPTH, IN_FLIGHT_BYTES // size))


def measure(path: str, file_size: int, direction: str, seconds: float, rounds: int = 3) -> list[Point]:
    """IOPS at each size: the median of ``rounds`` sweeps (sweeping, not repeating one size,
    spreads a noisy neighbour's bursts over all sizes)."""
    rw = "randread" if direction == "read" else "randwrite"
    runs: dict[int, list[float]] = {size: [] for size in SIZES}
    for _ in range(rounds):
        for size in SIZES:
            res = run_fio([
                "--name=costmodel", f"--filename={path}", f"--size={file_size}", "--direct=1", "--ioengine=io_uring",
                f"--rw={rw}", f"--bs={size}", f"--iodepth={depth_for(size)}", "--time_based",
                f"--runtime={int(seconds * 1000)}ms", "--randrepeat=0", "--norandommap",
            ], timeout=seconds * 10 + 30)
            runs[size].append(res.total(direction).iops)
    return [Point(size, depth_for(size), statistics.median(runs[size])) for size in SIZES]


def predicted(form: str, iops: float, bw: float, size: int) -> float:
    if form == "additive":
        return 1.0 / iops + size / bw
    return max(1.0 / iops, size / bw)


def evaluate(points: list[Point]) -> dict[str, dict]:
    """Per form: the utilisation each size would be charged at saturation, and the mean |log| error."""
    iops = points[0].iops  # the smallest size: the IOPS calibration
    bw = points[-1].iops * points[-1].size  # the largest: the bandwidth calibration
    out = {}
    for form in COST_FORMS:
        util = [p.iops * predicted(form, iops, bw, p.size) for p in points]
        out[form] = {"utilisation": util, "error": sum(abs(math.log(u)) for u in util) / len(util)}
    return out


def report(direction: str, points: list[Point], out=sys.stdout) -> str:
    ev = evaluate(points)
    print(f"\n{direction}: calibration {points[0].iops:,.0f} IOPS at {points[0].size >> 10} KiB, "
          f"{points[-1].iops * points[-1].size / 1e6:,.0f} MB/s at {points[-1].size >> 10} KiB", file=out)
    print("  utilisation the scheduler charges a saturating stream of each size (ideal 1.00):", file=out)
    print(f"  {'size':>7} {'depth':>5} {'IOPS':>9} {'us/req':>8}  " + "  ".join(f"{f:>8}" for f in COST_FORMS),
          file=out)
    for i, p in enumerate(points):
        utils = "  ".join(f"{ev[f]['utilisation'][i]:8.2f}" for f in COST_FORMS)
        print(f"  {p.size >> 10:>5}Ki {p.depth:>5} {p.iops:>9,.0f} {p.seconds_per_request * 1e6:>8.1f}  {utils}",
              file=out)
    best = min(COST_FORMS, key=lambda f: ev[f]["error"])
    print("  mean |log(utilisation)|: " + ", ".join(f"{f} {ev[f]['error']:.3f}" for f in COST_FORMS)
          + f"  -> {best} fits better (iosched's default: {DEFAULT_COST_FORM})", file=out)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ioengine.bench.costmodel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--file", default=".scratch/bench.dat", help="test file on the disk (created if missing)")
    p.add_argument("--size", type=int, default=256 << 20, help="test file size in bytes")
    p.add_argument("--seconds", type=float, default=1.0, help="fio run time per size")
    p.add_argument("--direction", choices=("read", "write", "both"), default="both")
    p.add_argument("--rounds", type=int, default=3, help="sweeps over the sizes (medians are used)")
    args = p.parse_args(argv)
    path = os.path.abspath(args.file)
    ensure_bench_file(path, args.size)
    try:
        for d in ("read", "write") if args.direction == "both" else (args.direction,):
            report(d, measure(path, args.size, d, args.seconds, args.rounds))
    except FioError as e:
        print(f"costmodel: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
