"""ioengine-bench: measure ioengine side by side with fio on the same file.

    python -m ioengine.bench demo        # 4k random reads at QD32: ioengine vs fio, alternating
    python -m ioengine.bench randread --iodepth 1 --rounds 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass

from ..options import ReactorOptions, add_reactor_arguments, reactor_options_from_args
from .fio_json import FioError, run_fio
from .workloads import Pattern, RunResult, ensure_bench_file, run_pattern

DEFAULT_FILE = ".scratch/bench.dat"
DEFAULT_SIZE = 256 << 20


@dataclass(slots=True)
class Side:
    iops: float
    mb_per_s: float
    cpu_us_per_io: float
    p50_us: float = float("nan")
    p99_us: float = float("nan")


def _fio_engine(backend: str) -> str:
    return "libaio" if backend == "linux-aio" else "psync" if backend == "threads" else "io_uring"


def run_fio_side(path: str, size: int, pattern: Pattern, seconds: float, options: ReactorOptions) -> Side:
    direction = "read" if pattern.rw in ("read", "randread") else "write" if pattern.rw in ("write", "randwrite") else "all"
    res = run_fio([
        "--name=ioengine-bench", f"--filename={path}", f"--size={size}", "--direct=1",
        f"--ioengine={_fio_engine(options.backend)}", "--time_based", f"--runtime={int(seconds * 1000)}ms",
        "--randrepeat=0", "--norandommap", *pattern.fio_args(),
    ], timeout=seconds * 10 + 30)
    d = res.total(direction)
    return Side(d.iops, d.mb_per_s, res.cpu_us_per_io() or float("nan"),
                d.clat_ns.percentile(50) / 1000, d.clat_ns.percentile(99) / 1000)


def run_ioengine_side(path: str, pattern: Pattern, seconds: float, options: ReactorOptions, latency: bool) -> Side:
    r: RunResult = run_pattern(path, pattern, seconds, options, latency=latency)
    return Side(r.iops, r.mb_per_s, r.cpu_us_per_io, r.percentile_us(50), r.percentile_us(99))


def compare(path: str, size: int, pattern: Pattern, seconds: float, rounds: int, options: ReactorOptions,
            latency: bool, out=sys.stdout) -> dict:
    """Alternate ioengine and fio (A B A B …) and print medians and the ratio."""
    ensure_bench_file(path, size)
    ours: list[Side] = []
    theirs: list[Side] = []
    print(f"{pattern.rw} ({pattern.api} API) bs={pattern.bs} iodepth={pattern.iodepth} on {path} ({size >> 20} MiB), "
          f"{rounds} rounds of {seconds:g} s each, {options}", file=out)
    for i in range(rounds):
        ours.append(run_ioengine_side(path, pattern, seconds, options, latency))
        theirs.append(run_fio_side(path, size, pattern, seconds, options))
        print(f"  round {i + 1}: ioengine {ours[-1].iops:9.0f} IOPS {ours[-1].cpu_us_per_io:5.2f} cpu-us/io | "
              f"fio {theirs[-1].iops:9.0f} IOPS {theirs[-1].cpu_us_per_io:5.2f} cpu-us/io", file=out)

    def med(xs: list[Side], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in xs)

    rows = [("IOPS", "iops", "{:.0f}"), ("MB/s", "mb_per_s", "{:.1f}"), ("CPU-us/IO", "cpu_us_per_io", "{:.2f}")]
    if latency:
        rows += [("p50 us", "p50_us", "{:.1f}"), ("p99 us", "p99_us", "{:.1f}")]
    print(f"\n  {'median of ' + str(rounds):<12} {'ioengine':>12} {'fio':>12} {'ratio':>8}", file=out)
    summary = {}
    for label, attr, fmt in rows:
        a, b = med(ours, attr), med(theirs, attr)
        ratio = a / b if b else float("nan")
        summary[attr] = {"ioengine": a, "fio": b, "ratio": ratio}
        print(f"  {label:<12} {fmt.format(a):>12} {fmt.format(b):>12} {ratio:>7.2f}x", file=out)
    return summary


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ioengine-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("demo", "short 4k random-read QD32 comparison with fio"),
                        ("randread", "4k random reads vs fio"), ("randwrite", "4k random writes vs fio"),
                        ("read", "sequential reads vs fio"), ("write", "sequential writes vs fio"),
                        ("stream-read", "input stream (read_ahead = iodepth-1) vs fio sequential reads"),
                        ("stream-write", "output stream (write_behind = iodepth) vs fio sequential writes")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--file", default=DEFAULT_FILE, help="test file (created if missing)")
        s.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="test file size (e.g. 256M)")
        s.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
        s.add_argument("--rounds", type=int, default=3, help="A/B rounds (medians are quoted)")
        s.add_argument("--bs", type=_size, default=4096 if name.startswith(("rand", "demo")) else 128 << 10)
        s.add_argument("--iodepth", type=int, default=32 if name.startswith(("rand", "demo")) else
                       5 if name == "stream-read" else 4)
        add_reactor_arguments(s)
        s.add_argument("--latency", action="store_true", help="also measure per-I/O latency (adds overhead)")
    s = sub.add_parser("sched", help="the disk scheduler on the real disk: shares, isolation, overhead")
    s.add_argument("--file", default=DEFAULT_FILE, help="test file (created if missing)")
    s.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="test file size (e.g. 256M)")
    s.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    s.add_argument("--rounds", type=int, default=3, help="rounds for (a) and (c) (medians are quoted)")
    s.add_argument("--io-properties-file", default=None, help="calibration to use instead of a built-in one")
    args = p.parse_args(argv)
    if args.command == "sched":
        from .sched import main_sched

        main_sched(os.path.abspath(args.file), args.size, args.seconds, args.io_properties_file, args.rounds)
        return 0
    rw = "randread" if args.command == "demo" else args.command.removeprefix("stream-")
    api = "stream" if args.command.startswith("stream-") else "file"
    try:
        compare(os.path.abspath(args.file), args.size, Pattern(rw, args.bs, args.iodepth, api=api), args.seconds,
                args.rounds, reactor_options_from_args(args), args.latency)
    except FioError as e:
        print(f"ioengine-bench: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
