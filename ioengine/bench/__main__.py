"""ioengine-bench: measure ioengine side by side with fio on the same file.

    ioengine-bench compare                     # the whole matrix: ioengine vs fio, alternating, medians
    ioengine-bench compare --quick             # 4 rows, 1 s x 3 rounds, 256 MiB (what `make demo` runs)
    ioengine-bench compare --loops uvloop      # ioengine on uvloop only (default: asyncio and uvloop)
    ioengine-bench compare --smp 2             # each row on 2 shards vs fio numjobs=2 (QD per shard / job)
    ioengine-bench compare --rows randread-qd1,read-stream --json r.json --markdown r.md --chart r.png
    ioengine-bench run job.fio [--output-format json]   # a fio job file, run through ioengine
    ioengine-bench run --list-options          # the fio options it runs, with fio's meaning
    ioengine-bench plot job_bw.1.log job_lat.1.log --out logs.png   # fio-format logs (ours or fio's)
    ioengine-bench randread --iodepth 1 --rounds 5      # one pattern, any bs / iodepth
    ioengine-bench sched                       # the disk scheduler on the real disk
    ioengine-bench smp                         # cross-shard round trips vs a multiprocessing Pipe
    ioengine-bench timers                      # how late asyncio.sleep wakes: precise timers vs asyncio

(`python -m ioengine.bench ...` is the same.)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys

from ..options import (
    ReactorOptions,
    SmpOptions,
    add_reactor_arguments,
    reactor_options_from_args,
    smp_options_from_args,
)
from .compare import (
    QUICK_ROWS,
    QUICK_SECONDS,
    QUICK_SIZE,
    ROWS,
    CompareSetupError,
    Sample,
    parse_loops,
    run_fio_side,
    run_ioengine_side,
    run_matrix,
    select_rows,
)
from .fio_json import FioError
from .hugepages import AUTO, FIO_IOMEM_KINDS, HugePageError
from .jobfile import parse_size
from .sched import CALIBRATIONS, DEFAULT_CALIBRATION
from .timers import DEFAULT_DELAYS_US
from .workloads import Pattern, ensure_bench_file

DEFAULT_FILE = ".scratch/bench.dat"
DEFAULT_SIZE = 256 << 20

# Kept for callers of the one-pattern comparison.
Side = Sample


def compare(path: str, size: int, pattern: Pattern, seconds: float, rounds: int, options: ReactorOptions,
            latency: bool, out=sys.stdout) -> dict:
    """One pattern: alternate ioengine and fio (A B A B …), print medians and the ratio.

    Returns ``{metric: {"ioengine": median, "fio": median, "ratio": ioengine / fio}}``.
    """
    ensure_bench_file(path, size)
    ours: list[Sample] = []
    theirs: list[Sample] = []
    print(f"{pattern.rw} ({pattern.api} API) bs={pattern.bs} iodepth={pattern.iodepth} on {path} ({size >> 20} MiB), "
          f"{rounds} rounds of {seconds:g} s each, {options}", file=out)
    for i in range(rounds):
        ensure_bench_file(path, size)
        ours.append(run_ioengine_side(path, size, pattern, seconds, options, latency))
        ensure_bench_file(path, size)
        theirs.append(run_fio_side(path, size, pattern, seconds, options))
        print(f"  round {i + 1}: ioengine {ours[-1].iops:9.0f} IOPS {ours[-1].cpu_us_per_io:5.2f} cpu-us/io | "
              f"fio {theirs[-1].iops:9.0f} IOPS {theirs[-1].cpu_us_per_io:5.2f} cpu-us/io", file=out)
    ensure_bench_file(path, size)

    def med(xs: list[Sample], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in xs)

    rows = [("IOPS", "iops", "{:.0f}"), ("MB/s", "mb_per_s", "{:.1f}"), ("CPU-us/IO", "cpu_us_per_io", "{:.2f}")]
    if latency:
        rows += [("p50 us", "p50_us", "{:.1f}"), ("p99 us", "p99_us", "{:.1f}"), ("p99.9 us", "p999_us", "{:.1f}")]
    print(f"\n  {'median of ' + str(rounds):<12} {'ioengine':>12} {'fio':>12} {'ratio':>8}", file=out)
    summary = {}
    for label, attr, fmt in rows:
        a, b = med(ours, attr), med(theirs, attr)
        ratio = a / b if b else float("nan")
        summary[attr] = {"ioengine": a, "fio": b, "ratio": ratio}
        print(f"  {label:<12} {fmt.format(a):>12} {fmt.format(b):>12} {ratio:>7.2f}x", file=out)
    return summary


def _size(text: str) -> int:
    """A size on the command line: 4096, 4k, 128K, 256M, 256MiB, 1g (k/m/g are always binary)."""
    t = text.strip().lower()
    t = t[:-2] if t.endswith("ib") else t[:-1] if t.endswith("b") and len(t) > 1 and t[-2] in "kmgt" else t
    try:
        return parse_size(t)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return v


def _add_compare_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--rows", default=None,
                   help=f"comma-separated rows (default: all, or the --quick ones): {', '.join(ROWS)}")
    s.add_argument("--quick", action="store_true",
                   help=f"short preset: rows {','.join(QUICK_ROWS)}, {QUICK_SECONDS:g} s x 3 rounds, "
                        f"{QUICK_SIZE >> 20} MiB (explicit --rows/--seconds/--rounds/--size still win)")
    s.add_argument("--file", default=DEFAULT_FILE, help="test file (created/laid out if missing or short)")
    s.add_argument("--size", type=_size, default=None, help=f"test file size (default {DEFAULT_SIZE >> 20}M)")
    s.add_argument("--seconds", type=_positive_float, default=None, help="duration of each run (default 3)")
    s.add_argument("--rounds", type=_positive_int, default=None, help="A/B rounds, medians quoted (default 3)")
    s.add_argument("--smp", type=_positive_int, default=1,
                   help="shards (cores): ioengine runs each row on N shards at once, fio numjobs=N on the same "
                        "file, each at the row's queue depth (stream rows run with --smp 1 only)")
    s.add_argument("--loops", default=None, metavar="LOOPS",
                   help="event loops ioengine runs on, each next to fio, comma-separated from asyncio,uvloop "
                        "(default: both when uvloop is installed, else asyncio)")
    s.add_argument("--caio", action="store_true",
                   help="add a caio column (buffered I/O; random rows only) when caio is installed")
    s.add_argument("--json", metavar="FILE", help="write every figure (medians and rounds) as JSON")
    s.add_argument("--markdown", metavar="FILE", help="write the table as Markdown")
    s.add_argument("--chart", metavar="FILE.png", help="write a bar chart of the ratios to fio (matplotlib)")
    s.add_argument("--fio-iomem", metavar="KIND", default=AUTO, choices=(AUTO, *FIO_IOMEM_KINDS),
                   help="fio's buffer memory (--iomem): auto (default) gives fio huge pages (shmhuge) in the rows "
                        "whose blocks ioengine's pool takes from huge pages, malloc in the others, reserving "
                        "hugetlb pages for the runs (as root; restored after, and said); or one kind for every "
                        f"row: {', '.join(FIO_IOMEM_KINDS)}")
    add_reactor_arguments(s)


def _run_compare(args: argparse.Namespace) -> int:
    from . import report

    quick = args.quick or args.command == "demo"
    try:
        rows = select_rows(args.rows if args.rows is not None else QUICK_ROWS if quick else None)
    except ValueError as e:
        print(f"ioengine-bench compare: --rows: {e}", file=sys.stderr)
        return 2
    try:
        smp_opts = smp_options_from_args(args)
        smp_opts.cpus()  # enough CPUs for the shards, before any run
    except ValueError as e:
        print(f"ioengine-bench compare: --smp {args.smp}: {e}", file=sys.stderr)
        return 2
    if args.smp > 1 and not any(r.smp_eligible for r in rows):
        print(f"ioengine-bench compare: --smp {args.smp}: the stream rows ({', '.join(r.name for r in rows)}) run "
              f"on one shard only (an output stream's close cuts the file where it ended); pick file-API rows",
              file=sys.stderr)
        return 2
    if args.loops is not None:
        try:
            loops = parse_loops(args.loops)[0]
        except ValueError as e:
            print(f"ioengine-bench compare: --loops: {e}", file=sys.stderr)
            return 2
    else:
        loops = None  # run_matrix picks both when uvloop imports, and says so when it does not
    seconds = args.seconds if args.seconds is not None else QUICK_SECONDS if quick else 3.0
    rounds = args.rounds if args.rounds is not None else 3
    size = args.size if args.size is not None else QUICK_SIZE if quick else DEFAULT_SIZE
    if size % (1 << 20):
        print(f"ioengine-bench compare: --size must be a multiple of 1 MiB, got {size}", file=sys.stderr)
        return 2
    if args.chart and importlib.util.find_spec("matplotlib") is None:  # fail before the runs, not after
        print("ioengine-bench compare: --chart needs matplotlib, which is not installed; "
              "pip install 'ioengine[bench]'", file=sys.stderr)
        return 2
    if shutil.which("fio") is None:  # before any run, not after the first ioengine one
        print("ioengine-bench compare: fio is not installed or not on PATH, and every row runs it "
              "(Debian/Ubuntu: apt install fio; `make test` installs it)", file=sys.stderr)
        return 2
    options = reactor_options_from_args(args)
    path = os.path.abspath(args.file)
    shards = f", ioengine on {args.smp} shards vs fio numjobs={args.smp}" if args.smp > 1 else ""
    print(f"ioengine vs fio: {len(rows)} row(s) x {rounds} round(s) x {seconds:g} s per side on {path} "
          f"({size >> 20} MiB), reactor backend {options.backend}{shards}", flush=True)
    try:
        matrix = run_matrix(path, size, rows, seconds, rounds, options, caio=args.caio, fio_iomem=args.fio_iomem,
                            loops=loops, smp=args.smp, cpuset=smp_opts.cpuset)
    except CompareSetupError as e:
        print(f"ioengine-bench compare: {e}", file=sys.stderr)
        return 2
    except HugePageError as e:  # the figures are in, but the system is not as it was: say how to fix it
        print(f"ioengine-bench compare: {e.strerror}", file=sys.stderr)
        return 1
    print()
    report.emit(matrix, sys.stdout, json_path=args.json, markdown_path=args.markdown, chart_path=args.chart)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ioengine-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("compare", help="the ioengine-vs-fio matrix (IOPS, MB/s, latency, CPU per I/O)")
    _add_compare_arguments(s)
    s = sub.add_parser("demo", help="= compare --quick (what `make demo` runs)")
    _add_compare_arguments(s)
    s = sub.add_parser("run", help="run a fio job file through ioengine; fio-like output")
    s.add_argument("job_file", nargs="?", help="fio job file (INI); --list-options shows the options it may use")
    s.add_argument("--list-options", action="store_true",
                   help="print the fio options ioengine runs, with fio's meaning, and exit")
    s.add_argument("--output-format", choices=("normal", "json"), default="normal",
                   help="normal: fio's text summary; json: fio's JSON schema (fields ioengine measures)")
    s.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop the jobs run on (every shard's; default: asyncio's)")
    add_reactor_arguments(s)
    s.set_defaults(smp_smp=None)  # run: one shard per concurrent clone, up to one per CPU (main_run)
    for name, help_ in (("randread", "4k random reads vs fio"), ("randwrite", "4k random writes vs fio"),
                        ("read", "sequential reads vs fio"), ("write", "sequential writes vs fio"),
                        ("stream-read", "input stream (read_ahead = iodepth-1) vs fio sequential reads"),
                        ("stream-write", "output stream (write_behind = iodepth) vs fio sequential writes")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--file", default=DEFAULT_FILE, help="test file (created if missing)")
        s.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="test file size (e.g. 256M)")
        s.add_argument("--seconds", type=_positive_float, default=3.0, help="duration of each run")
        s.add_argument("--rounds", type=_positive_int, default=3, help="A/B rounds (medians are quoted)")
        s.add_argument("--bs", type=_size, default=4096 if name.startswith("rand") else 128 << 10)
        s.add_argument("--iodepth", type=_positive_int, default=32 if name.startswith("rand") else
                       5 if name == "stream-read" else 4)
        add_reactor_arguments(s)
        s.add_argument("--latency", action="store_true", help="also measure per-I/O latency (adds overhead)")
    s = sub.add_parser("sched", help="the disk scheduler on the real disk: shares, isolation, overhead")
    s.add_argument("--file", default=DEFAULT_FILE, help="test file (created if missing)")
    s.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="test file size (e.g. 256M)")
    s.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    s.add_argument("--rounds", type=int, default=3, help="rounds for (a) and (c) (medians are quoted)")
    s.add_argument("--io-properties-file", default=None, help="calibration to use instead of measuring one")
    s.add_argument("--calibration", choices=CALIBRATIONS, default=DEFAULT_CALIBRATION,
                   help="without --io-properties-file: iotune (the disk at depth, ~12 s) "
                        "or builtin (the engine's ceiling)")
    s.add_argument("--smp", type=_positive_int, default=1,
                   help="spread the classes over this many shards (ioengine.bench.sched_smp)")
    s = sub.add_parser("smp", help="cross-shard round trips (latency, rate) vs a multiprocessing Pipe")
    s.add_argument("--count", type=_positive_int, default=20000, help="single round trips timed per round")
    s.add_argument("--seconds", type=_positive_float, default=2.0, help="duration of the pipelined run")
    s.add_argument("--inflight", type=_positive_int, default=200, help="round trips in flight when pipelined")
    s.add_argument("--rounds", type=_positive_int, default=3, help="alternating rounds (medians are quoted)")
    s.add_argument("--cpuset", default=None, help='the two CPUs, e.g. "0-1" (default: the first two allowed)')
    s.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the event loop ioengine.smp's shards run (default: asyncio's)")
    s = sub.add_parser("timers", help="how late asyncio.sleep(d) wakes: precise timers, asyncio, fio's thinktime")
    s.add_argument("--delays", default=",".join(map(str, DEFAULT_DELAYS_US)),
                   help="comma-separated sleep lengths in µs")
    s.add_argument("--count", type=_positive_int, default=300, help="sleeps per delay per side and round")
    s.add_argument("--rounds", type=_positive_int, default=3, help="alternating rounds (medians are quoted)")
    s = sub.add_parser("scaling", help="one shard vs N shards at the same total depth, next to fio numjobs=1 / N")
    s.add_argument("--file", default=DEFAULT_FILE, help="test file (created if missing)")
    s.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="test file size (e.g. 256M)")
    s.add_argument("--seconds", type=_positive_float, default=3.0, help="duration of each run")
    s.add_argument("--rounds", type=_positive_int, default=3, help="alternating rounds (medians are quoted)")
    s.add_argument("--depth", type=_positive_int, default=64, help="total queue depth (split over the shards)")
    s.add_argument("--smp", type=_positive_int, default=2, help="shards (and fio jobs) of the split runs")
    s.add_argument("--rows", default="randread,randwrite", help="comma-separated: randread, randwrite")
    s = sub.add_parser("plot", help="plot fio-format logs (write_bw_log/write_lat_log/write_iops_log) to a PNG")
    s.add_argument("logs", nargs="+", help="PREFIX_bw.N.log, _lat/_clat/_slat, _iops files (ours or fio's)")
    s.add_argument("--out", required=True, metavar="FILE.png", help="where to write the plot")
    s.add_argument("--avg-ms", type=int, default=100, help="average the samples over windows this long (0: raw)")
    args = p.parse_args(argv)
    try:
        if args.command == "plot":
            from .logplot import LogError, plot_logs

            try:
                plot_logs(args.logs, args.out, args.avg_ms)
            except (LogError, ImportError) as e:
                print(f"ioengine-bench plot: {e}", file=sys.stderr)
                return 2
            print(f"wrote {args.out}")
            return 0
        if args.command == "scaling":
            from .scaling import main_scaling

            try:
                main_scaling(os.path.abspath(args.file), args.size, args.seconds, args.rounds, args.depth, args.smp,
                             [r.strip() for r in args.rows.split(",") if r.strip()])
            except ValueError as e:
                print(f"ioengine-bench scaling: {e}", file=sys.stderr)
                return 2
            return 0
        if args.command == "timers":
            from .timers import main_timers

            try:
                delays = tuple(int(d) for d in args.delays.split(",") if d.strip())
                if not delays or min(delays) <= 0:
                    raise ValueError
            except ValueError:
                print(f"ioengine-bench timers: --delays wants positive whole µs, comma-separated, got {args.delays!r}",
                      file=sys.stderr)
                return 2
            main_timers(delays, args.count, args.rounds)
            return 0
        if args.command == "smp":
            from .smp import main_smp

            main_smp(args.count, args.seconds, args.rounds, args.inflight, args.cpuset, loop=args.loop)
            return 0
        if args.command == "sched":
            from .sched import main_sched

            main_sched(os.path.abspath(args.file), args.size, args.seconds, args.io_properties_file, args.rounds,
                       calibration=args.calibration, smp=args.smp)
            return 0
        if args.command in ("compare", "demo"):
            return _run_compare(args)
        if args.command == "run":
            from .runjob import main_run

            auto = args.smp_smp is None
            try:
                if auto:
                    SmpOptions(cpuset=args.smp_cpuset).cpus()  # a valid cpuset, before anything runs
                    smp_opts = None
                else:
                    smp_opts = smp_options_from_args(args)
                    smp_opts.cpus()  # enough CPUs for the shards, before anything runs
            except ValueError as e:
                print(f"ioengine-bench run: --smp {args.smp_smp or 'auto'}: {e}", file=sys.stderr)
                return 2
            return main_run(args.job_file, reactor_options_from_args(args), args.output_format,
                            list_options=args.list_options, smp=smp_opts, auto_smp=auto, cpuset=args.smp_cpuset,
                            loop=args.loop)
        rw = args.command.removeprefix("stream-")
        api = "stream" if args.command.startswith("stream-") else "file"
        compare(os.path.abspath(args.file), args.size, Pattern(rw, args.bs, args.iodepth, api=api), args.seconds,
                args.rounds, reactor_options_from_args(args), args.latency)
    except FioError as e:
        print(f"ioengine-bench: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
