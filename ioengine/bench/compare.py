"""``ioengine-bench compare``: a matrix of workloads through ioengine and fio on the same file.

Each row runs ioengine on each event loop asked for (asyncio's default loop and uvloop), fio, and
caio (when asked and installed) for the same duration on the same file, alternating
(ioengine, ioengine·uvloop, fio[, caio]) for ``rounds`` rounds; medians are quoted, with ratios to
fio for every other side. Per side and row: IOPS, MB/s, completion-latency percentiles
(p50/p99/p99.9) and CPU-µs per I/O.

* ioengine (side "ioengine": asyncio's default loop; side "ioengine-uvloop": the same code under
  uvloop's loop, checked to be uvloop's while it runs): each I/O is timed with two ``perf_counter_ns`` calls
  around its ``await`` (streams:
  from the stream's submission to the reaped completion); CPU is the whole process's
  user + sys time (getrusage), so the event loop, the reactor and the benchmark loop all count.
* fio: ``lat`` percentiles (``--lat_percentiles=1 --percentile_list=50:99:99.9``): slat + clat, from
  the I/O's preparation to its reaped completion, as ioengine's await times it. fio's ``clat``
  starts after the submitting system call returns, which at QD1 on a VM is ~20-30 µs later (the
  JSON keeps its clat p50 too: ``clat_p50_us``). CPU is the job's usr + sys. fio's
  buffers are the kind of memory ioengine's are (:mod:`~ioengine.bench.hugepages`): hugetlb huge
  pages (``--iomem=shmhuge``, reserved for the runs and given back) in the rows whose blocks ioengine's
  pool cuts from huge-page arenas (128k), malloc otherwise; each row says which fio had.
* ``smp`` > 1 (fio's ``numjobs``): ioengine runs each row on N shards at once in one
  ``ioengine.run(..., smp=N)`` (:func:`~ioengine.bench.workloads.run_pattern_smp`: each shard opens
  the file and runs the same pattern, its own seed, at the row's queue depth, all started together);
  IOPS and bytes are summed, latencies merged, CPU is the sum of every shard process's user + sys.
  fio runs ``numjobs=N --group_reporting`` on the same file, each job at the row's iodepth; its CPU
  is all jobs' usr + sys. Random rows: every shard / job over the whole file; sequential file-API
  rows: each its own contiguous 1/N (fio's ``offset_increment``); stream rows are not run (an
  output stream's close cuts the file where it ended). uvloop is used only if every shard gets it.
* caio (buffered, see :func:`~ioengine.bench.workloads.run_caio_pattern`): like ioengine.

The machine is shared and noisy: compare ratios within one run, not absolute numbers across runs.
"""
from __future__ import annotations

import contextlib
import datetime
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from ..options import ReactorOptions
from .fio_json import fio_version, run_fio
from .hugepages import AUTO, HUGE_IOMEM, HugePageReservation, fio_iomem_for, hugetlb_pages_for
from .workloads import (
    LOOPS,
    CaioUnavailable,
    Pattern,
    RunResult,
    UvloopUnavailable,
    caio_module,
    ensure_bench_file,
    run_caio_pattern,
    run_pattern,
    run_pattern_smp,
    seq_part_size,
    smp_loop_kinds,
    uvloop_module,
)

PERCENTILES = (50.0, 99.0, 99.9)

#: ioengine's side on each event loop: the JSON key (ASCII) of the side that runs on that loop.
LOOP_SIDES = {"asyncio": "ioengine", "uvloop": "ioengine-uvloop"}
SIDES = ("ioengine", "ioengine-uvloop", "fio", "caio")
#: How each side is shown in the tables and the chart (plain ASCII, and Unicode).
SIDE_LABELS = {"ioengine": ("ioengine", "ioengine"), "ioengine-uvloop": ("ioengine-uvloop", "ioengine·uvloop"),
               "fio": ("fio", "fio"), "caio": ("caio", "caio")}


def side_label(side: str, unicode: bool = True) -> str:
    """How ``side`` reads in a table: "ioengine·uvloop" (ASCII: "ioengine-uvloop"), else the key."""
    return SIDE_LABELS.get(side, (side, side))[1 if unicode else 0]


def engine_sides(sides: Sequence[str]) -> list[str]:
    """The ioengine sides among ``sides`` (one per loop), in LOOPS order."""
    return [LOOP_SIDES[lp] for lp in LOOPS if LOOP_SIDES[lp] in sides]


def parse_loops(text: str | Sequence[str] | None) -> tuple[tuple[str, ...], str | None]:
    """The loops to run ioengine on, and a note to show when a default had to leave one out.

    None: both loops when uvloop imports, else asyncio's alone (the note says why). Otherwise a
    comma-separated string or a list of names from LOOPS; ValueError for an unknown name, none at
    all, or uvloop asked for explicitly but not installed.
    """
    if text is None:
        try:
            uvloop_module()
        except UvloopUnavailable as e:
            return ("asyncio",), f"{e}; ioengine runs on asyncio's default loop only"
        return tuple(LOOPS), None
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in LOOPS]
    if unknown:
        raise ValueError(f"unknown loop(s) {', '.join(unknown)}; known loops: {', '.join(LOOPS)}")
    if not names:
        raise ValueError(f"no loop selected; known loops: {', '.join(LOOPS)}")
    if "uvloop" in names:
        try:
            uvloop_module()
        except UvloopUnavailable as e:
            raise ValueError(str(e)) from None
    return tuple(n for n in LOOPS if n in names), None


class CompareSetupError(ValueError):
    """The matrix cannot run as asked (e.g. nothing left to run with smp > 1); says why."""


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the matrix: a pattern, how to name it, and which throughput figure leads."""

    name: str  # the --rows name, e.g. "randread-qd32"
    title: str  # e.g. "4k randread QD32"
    pattern: Pattern
    #: "iops" for small random I/O, "mb_per_s" for 128k sequential rows (what the chart shows)
    metric: str = "iops"
    #: How fio is told the same queue depth, when it differs from the pattern's (for the notes)
    fio_note: str = ""

    @property
    def smp_eligible(self) -> bool:
        """Whether the row runs with smp > 1: not the stream rows (an output stream's close cuts the
        file where that stream ended; N of them on one file would fight over its length)."""
        return self.pattern.api == "file"

    @property
    def caio_eligible(self) -> bool:
        """caio has no streams and no O_DIRECT: only the random file-API rows get a caio column."""
        return self.pattern.api == "file" and self.pattern.random


K4, K128 = 4096, 128 << 10

ROWS: dict[str, Row] = {r.name: r for r in (
    Row("randread-qd1", "4k randread QD1", Pattern("randread", K4, 1)),
    Row("randread-qd32", "4k randread QD32", Pattern("randread", K4, 32)),
    Row("randwrite-qd32", "4k randwrite QD32", Pattern("randwrite", K4, 32)),
    Row("randrw-qd32", "4k randrw 70/30 QD32", Pattern("randrw", K4, 32, rwmixread=70)),
    Row("read-dma", "128k seq read, dma_read QD4", Pattern("read", K128, 4), "mb_per_s"),
    Row("read-stream", "128k seq read, input stream RA4", Pattern("read", K128, 5, api="stream"), "mb_per_s",
        "read_ahead 4 = 5 reads in flight: fio iodepth 5"),
    Row("write-dma", "128k seq write, dma_write QD4", Pattern("write", K128, 4), "mb_per_s"),
    Row("write-stream", "128k seq write, output stream WB4", Pattern("write", K128, 4, api="stream"), "mb_per_s",
        "write_behind 4: fio iodepth 4; ioengine's stream also fdatasyncs at the end of each pass"),
)}

#: `--quick` (what `make demo` runs): four rows, short runs, a small file.
QUICK_ROWS = ("randread-qd1", "randread-qd32", "read-stream", "write-stream")
QUICK_SECONDS = 1.0
QUICK_SIZE = 256 << 20


@dataclass(slots=True)
class Sample:
    """One run of one side."""

    iops: float
    mb_per_s: float
    cpu_us_per_io: float
    p50_us: float = math.nan
    p99_us: float = math.nan
    p999_us: float = math.nan
    #: fio's clat p50 (from the submitting call's return), kept in the JSON next to its lat's
    clat_p50_us: float = math.nan

    @classmethod
    def from_run(cls, r: RunResult) -> Sample:
        return cls(r.iops, r.mb_per_s, r.cpu_us_per_io, *r.percentiles_us(PERCENTILES))


METRICS = ("iops", "mb_per_s", "cpu_us_per_io", "p50_us", "p99_us", "p999_us")


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Median of each metric on its own (NaNs ignored)."""
    def med(attr: str) -> float:
        xs = [getattr(s, attr) for s in samples if not math.isnan(getattr(s, attr))]
        return statistics.median(xs) if xs else math.nan

    return Sample(**{m: med(m) for m in (*METRICS, "clat_p50_us")})


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


@dataclass(slots=True)
class RowResult:
    row: Row
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # side -> one Sample per round
    skipped: dict[str, str] = field(default_factory=dict)  # side -> why it has no figures
    #: fio's buffer memory in this row (its ``--iomem``): "shmhuge" where ioengine's are huge pages
    fio_iomem: str = "malloc"

    def median(self, side: str) -> Sample | None:
        s = self.samples.get(side)
        return median_sample(s) if s else None

    def engine_sides(self) -> list[str]:
        """The ioengine sides this row ran (one per loop)."""
        return engine_sides(list(self.samples))

    def ratios(self, side: str = "ioengine") -> dict[str, float]:
        """``side`` over fio: throughput (IOPS), CPU per I/O, p50 latency."""
        a, f = self.median(side), self.median("fio")
        if a is None or f is None:
            return {"iops": math.nan, "mb_per_s": math.nan, "cpu_us_per_io": math.nan, "p50_us": math.nan}
        return {m: ratio(getattr(a, m), getattr(f, m)) for m in ("iops", "mb_per_s", "cpu_us_per_io", "p50_us")}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.row.name, "title": self.row.title, "metric": self.row.metric,
            "pattern": asdict(self.row.pattern), "fio_note": self.row.fio_note, "fio_iomem": self.fio_iomem,
            "median": {}, "rounds": {}, "ratio_to_fio": {}, "skipped": dict(self.skipped),
        }
        for side, samples in self.samples.items():
            out["median"][side] = _clean(asdict(median_sample(samples)))
            out["rounds"][side] = [_clean(asdict(s)) for s in samples]
            if side != "fio":
                out["ratio_to_fio"][side] = _clean(self.ratios(side))
        return out


def _clean(d: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: missing figures are null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


@dataclass(slots=True)
class Matrix:
    rows: list[RowResult]
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": [r.to_json() for r in self.rows]}


def fio_engine(backend: str) -> str:
    """fio's engine that matches a reactor backend (so iodepth means the same on both sides)."""
    return "libaio" if backend == "linux-aio" else "psync" if backend == "threads" else "io_uring"


def fio_direction(pattern: Pattern) -> str:
    return "read" if pattern.rw in ("read", "randread") else "write" if pattern.rw in ("write", "randwrite") else "all"


def fio_args(path: str, size: int, pattern: Pattern, seconds: float, options: ReactorOptions,
             iomem: str | None = None, smp: int = 1) -> list[str]:
    """fio's command line (without the executable) for one run of ``pattern``.

    ``smp`` > 1: ``numjobs=smp`` with ``group_reporting`` (IOPS, latency histograms and CPU over
    all jobs), each job at the pattern's iodepth on the same file: over the whole file for random
    patterns, its own contiguous part for sequential ones (``size`` and ``offset_increment`` =
    the part, as :func:`~ioengine.bench.workloads.shard_region` splits it for the shards).
    """
    region = [f"--size={size}"]
    jobs: list[str] = []
    if smp > 1:
        jobs = [f"--numjobs={smp}", "--group_reporting"]
        if not pattern.random:
            part = seq_part_size(pattern, size, smp)
            region = [f"--size={part}", f"--offset_increment={part}"]
    return [
        "--output-format=json+",
        "--name=ioengine-bench", f"--filename={path}", *region, "--direct=1",
        f"--ioengine={fio_engine(options.backend)}", "--time_based", f"--runtime={max(1, round(seconds * 1000))}ms",
        "--randrepeat=0", "--norandommap", "--lat_percentiles=1",
        "--percentile_list=" + ":".join(f"{p:g}" for p in PERCENTILES),
        *([f"--iomem={iomem}"] if iomem else []), *pattern.fio_args(), *jobs,
    ]


def run_fio_side(path: str, size: int, pattern: Pattern, seconds: float, options: ReactorOptions,
                 iomem: str | None = None, smp: int = 1) -> Sample:
    """One fio run of ``pattern`` (see :func:`fio_args`); json+ so read and write latencies of
    randrw, and of the jobs of an smp run, merge exactly.

    ``iomem``: fio's buffer memory (``--iomem``), e.g. ``shmhuge`` to give fio huge pages as
    ioengine's pool has (needs ``/proc/sys/vm/nr_hugepages`` reserved); None: fio's default.
    ``smp``: fio's numjobs (CPU per I/O is then all jobs' usr + sys over all their I/Os).
    """
    res = run_fio(fio_args(path, size, pattern, seconds, options, iomem, smp), timeout=seconds * 10 + 30)
    d = res.total(fio_direction(pattern))

    def pct(p: float, stats: Any = d.lat_ns) -> float:
        try:
            return float(stats.percentile(p)) / 1000
        except ValueError:
            return math.nan

    return Sample(d.iops, d.mb_per_s, res.cpu_us_per_io() or math.nan, pct(50), pct(99), pct(99.9),
                  clat_p50_us=pct(50, d.clat_ns))


def run_ioengine_side(path: str, size: int, pattern: Pattern, seconds: float, options: ReactorOptions,
                      latency: bool = True, loop: str = "asyncio", smp: int = 1, cpuset: Any = None) -> Sample:
    """One ioengine run of ``pattern``: in this process (smp=1), or on ``smp`` shards at once."""
    if smp > 1:
        return Sample.from_run(run_pattern_smp(path, pattern, seconds, options, smp=smp, cpuset=cpuset,
                                               latency=latency, size=size, loop=loop))
    return Sample.from_run(run_pattern(path, pattern, seconds, options, latency=latency, size=size, loop=loop))


def run_caio_side(path: str, size: int, pattern: Pattern, seconds: float) -> Sample:
    return Sample.from_run(run_caio_pattern(path, pattern, seconds, size=size))


def select_rows(names: str | Sequence[str] | None) -> list[Row]:
    """Rows by name (comma-separated string or list); all rows for None/"all"."""
    if names is None or names == "all":
        return list(ROWS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; known rows: {', '.join(ROWS)}")
    if not names:
        raise ValueError(f"no rows selected; known rows: {', '.join(ROWS)}")
    return [ROWS[n] for n in dict.fromkeys(names)]


def smp_note(smp: int) -> str:
    """How an smp run is set up, for the table's notes."""
    return (f"smp={smp}: ioengine: {smp} shards (processes), QD per shard; fio: numjobs={smp} (group_reporting), "
            f"iodepth per job; same file. Random rows: each shard / job over the whole file, its own seed; "
            f"sequential rows: each its own contiguous 1/{smp} of the file (fio offset_increment); "
            f"stream rows are not run with smp > 1.")


def machine_meta(path: str, size: int, seconds: float, rounds: int, options: ReactorOptions, *,
                 loops: Sequence[str] = ("asyncio",), notes: Sequence[str] = (), smp: int = 1) -> dict[str, Any]:
    from importlib import metadata

    def version_of(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "ioengine": version_of("ioengine") or "unknown", "fio": fio_version(), "python": platform.python_version(),
        "kernel": platform.release(), "cpus": os.cpu_count(), "file": path, "size": size,
        "seconds": seconds, "rounds": rounds, "backend": options.backend,
        "fio_engine": fio_engine(options.backend), "reactor_options": options.as_dict(),
        "loops": list(loops), "uvloop": version_of("uvloop") if "uvloop" in loops else None,
        "sides": {LOOP_SIDES[lp]: {"loop": lp} for lp in loops}, "notes": list(notes),
        "smp": smp, "fio_numjobs": smp,
    }


def fio_memory(rows: Sequence[Row], requested: str | None, options: ReactorOptions, *,
               thp: str | None = None) -> dict[str, str]:
    """fio's ``--iomem`` per row name. ``requested``: AUTO ("auto"): like ioengine's buffers,
    hugetlb pages (shmhuge) where the row's blocks come from huge-page arenas, malloc otherwise;
    None: fio's default (malloc); any other kind: that kind for every row. ``thp``: the
    transparent-huge-page mode (None: the system's)."""
    if requested is None:
        return {r.name: "malloc" for r in rows}
    if requested == AUTO:
        return {r.name: fio_iomem_for(r.pattern.bs, thp, options) for r in rows}
    return {r.name: requested for r in rows}


def fio_memory_note(iomem: dict[str, str], rows: Sequence[Row], requested: str | None) -> str:
    """The table's note on fio's buffers, e.g. "fio's buffers: shmhuge (hugetlb huge pages, like
    ioengine's pool) in 128k seq read, ...; malloc in 4k randread QD1, ..."."""
    by_kind: dict[str, list[str]] = {}
    for r in rows:
        by_kind.setdefault(iomem[r.name], []).append(r.title)
    how = {AUTO: "as ioengine's (--fio-iomem auto)", None: "fio's default"}.get(requested, f"--fio-iomem {requested}")
    huge = " (hugetlb huge pages, as ioengine's pool blocks of 64 KiB and up)"
    parts = [f"{kind}{huge if kind in HUGE_IOMEM else ''} in {', '.join(titles)}" for kind, titles in by_kind.items()]
    return f"fio's buffer memory, {how}: " + "; ".join(parts) + "."


def run_matrix(path: str, size: int, rows: Sequence[Row], seconds: float, rounds: int, options: ReactorOptions,
               *, caio: bool = False, progress: TextIO | None | str = "stdout",
               sides: dict[str, Callable[..., Sample]] | None = None, fio_iomem: str | None = None,
               loops: str | Sequence[str] | None = None, smp: int = 1, cpuset: Any = None,
               reserve: Callable[[int], HugePageReservation] | None = None, thp: str | None = None) -> Matrix:
    """Run every row: ``rounds`` × (ioengine, ioengine-uvloop, fio[, caio]) in that order; collect
    per-round samples.

    ``loops``: the event loops ioengine runs on (see :func:`parse_loops`; None: both when uvloop
    is installed, else asyncio's alone, with a note). ``sides`` replaces the runners (tests); with
    it, ``loops=None`` means the loops whose ioengine side it has. By default the real ioengine
    (per loop) / fio / caio runs. Progress lines go to ``progress`` (``"stdout"``: whatever
    ``sys.stdout`` is; None: nowhere).

    ``smp`` > 1: ioengine on that many shards against fio's ``numjobs`` (see the module's
    docstring); stream rows are left out, and so is uvloop when the shards do not all get it
    (each with a note). caio stays a one-process column.

    ``fio_iomem``: fio's buffer memory (:func:`fio_memory`; None: malloc, "auto": like ioengine's).
    Where a row gets hugetlb pages, ``reserve(pages)`` makes them available for the whole matrix
    (default: :class:`~ioengine.bench.hugepages.HugePageReservation` on the system, which says what
    it reserved and restores it; with ``sides`` replacing fio, none is made); if it cannot, those
    rows' fio keeps malloc and a note says why. ``thp``: the THP mode to decide by (None: the system's).
    """
    if progress == "stdout":
        progress = sys.stdout
    out: TextIO | None = progress  # type: ignore[assignment]  # "stdout" was just replaced
    if isinstance(smp, bool) or not isinstance(smp, int) or smp < 1:
        raise ValueError(f"smp must be an integer >= 1, got {smp!r}")
    notes: list[str] = []
    if loops is None and sides is not None:
        loop_list = tuple(lp for lp in LOOPS if LOOP_SIDES[lp] in sides)
    else:
        loop_list, note = parse_loops(loops)
        if note:
            notes.append(note)
            _say(out, f"note: {note}")
    if smp > 1:
        notes.append(smp_note(smp))
        left_out = [r.name for r in rows if not r.smp_eligible]
        if left_out:
            note = (f"smp={smp}: row(s) {', '.join(left_out)} not run: the stream rows run on one shard only "
                    f"(an output stream's close cuts the file where it ended)")
            notes.append(note)
            _say(out, f"note: {note}")
            rows = [r for r in rows if r.smp_eligible]
        if sides is None and "uvloop" in loop_list:
            kinds = smp_loop_kinds(smp, "uvloop", options, cpuset)
            if any(k != "uvloop" for k in kinds):
                note = (f"smp={smp}: the ioengine-uvloop side is skipped: started on uvloop, the shards run on "
                        f"{', '.join(f'{k} ({kind})' for k, kind in enumerate(kinds))}; ioengine.smp starts "
                        + ("shard 1 as a fresh interpreter" if smp == 2
                           else f"shards 1..{smp - 1} as fresh interpreters")
                        + " on asyncio's default loop")
                notes.append(note)
                _say(out, f"note: {note}")
                loop_list = tuple(lp for lp in loop_list if lp != "uvloop")
                if not loop_list:
                    raise CompareSetupError(note + "; no loop left to run ioengine on (ask for --loops asyncio)")
    if not rows:
        raise CompareSetupError(f"no row to run with smp={smp} (the stream rows run on one shard only)")
    runners = sides or {
        **{LOOP_SIDES[lp]: (lambda p, s, pat, sec, lp=lp: run_ioengine_side(p, s, pat, sec, options, loop=lp,
                                                                             smp=smp, cpuset=cpuset))
           for lp in loop_list},
        "fio": lambda p, s, pat, sec: run_fio_side(p, s, pat, sec, options, None, smp),
        "caio": run_caio_side,
    }
    engines = [LOOP_SIDES[lp] for lp in loop_list]

    def fio_with(iomem: str) -> Callable[..., Sample]:
        """The fio runner of a row whose fio gets ``iomem`` (a runner from ``sides`` is taken as it is)."""
        if sides is not None:
            return runners["fio"]
        return lambda p, s, pat, sec: run_fio_side(p, s, pat, sec, options, iomem, smp)

    caio_reason = None
    if caio and smp > 1:
        caio_reason = f"caio is a one-process column: not run with smp={smp}"
        _say(out, f"note: {caio_reason}")
    elif caio:
        try:
            caio_module()
        except CaioUnavailable as e:
            caio_reason = str(e)
            _say(out, f"note: {caio_reason}")
    iomem = fio_memory(rows, fio_iomem, options, thp=thp)
    notes.append(fio_memory_note(iomem, rows, fio_iomem))
    pages = max((hugetlb_pages_for(r.pattern.bs, r.pattern.iodepth, smp) for r in rows if iomem[r.name] in HUGE_IOMEM),
                default=0)
    if reserve is None:
        reserve = (lambda n: HugePageReservation(0)) if sides is not None and "fio" in sides else HugePageReservation
    with contextlib.ExitStack() as stack:
        if pages:
            got = stack.enter_context(reserve(pages))
            if got.message:
                notes.append(got.message)
                _say(out, f"note: {got.message}")
            if not got.ok:
                huge = [r.title for r in rows if iomem[r.name] in HUGE_IOMEM]
                note = (f"fio keeps malloc'd buffers in {', '.join(huge)}: {pages} hugetlb page(s) needed, "
                        f"{got.reason}; those rows compare page layouts as well as engines")
                notes.append(note)
                _say(out, f"note: {note}")
                iomem = {name: ("malloc" if kind in HUGE_IOMEM else kind) for name, kind in iomem.items()}
        results = _run_rows(path, size, rows, seconds, rounds, runners, fio_with, engines, caio, caio_reason, iomem,
                            out)
    return Matrix(results, {**machine_meta(path, size, seconds, rounds, options, loops=loop_list, notes=notes,
                                           smp=smp), "fio_iomem": fio_iomem})


def _run_rows(path: str, size: int, rows: Sequence[Row], seconds: float, rounds: int,
              runners: dict[str, Callable[..., Sample]], fio_with: Callable[[str], Callable[..., Sample]],
              engines: list[str], caio: bool, caio_reason: str | None, iomem: dict[str, str],
              out: TextIO | None) -> list[RowResult]:
    ensure_bench_file(path, size)
    results = []
    for row in rows:
        order = [*engines, "fio"]
        rr = RowResult(row, {side: [] for side in order}, fio_iomem=iomem[row.name])
        if caio:
            if caio_reason is not None:
                rr.skipped["caio"] = caio_reason
            elif not row.caio_eligible:
                rr.skipped["caio"] = "caio covers only the random file-API rows (no streams, buffered I/O)"
            else:
                order.append("caio")
                rr.samples["caio"] = []
        for i in range(rounds):
            line = []
            for side in order:
                ensure_bench_file(path, size)  # an output stream's close may have cut the file
                run = fio_with(rr.fio_iomem) if side == "fio" else runners[side]
                s = run(path, size, row.pattern, seconds)
                rr.samples[side].append(s)
                line.append(f"{side} {_fmt_tp(s, row.metric)} {s.cpu_us_per_io:.2f} cpu-us/io")
            _say(out, f"  {row.name} round {i + 1}/{rounds}: " + " | ".join(line))
        results.append(rr)
    ensure_bench_file(path, size)
    return results


def _fmt_tp(s: Sample, metric: str) -> str:
    return f"{s.iops:.0f} IOPS" if metric == "iops" else f"{s.mb_per_s:.0f} MB/s"


def _say(out: TextIO | None, text: str) -> None:
    if out is not None:
        print(text, file=out, flush=True)
