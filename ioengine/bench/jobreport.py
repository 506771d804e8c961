"""What a run did and how it is reported, the way fio reports: :class:`CloneRun` (one clone),
:class:`JobsRun` (the whole run), the reporting entries (one per clone, or per group with
``group_reporting``), fio's text, its JSON and its log files.

Reported: per job (per clone, or per group with ``group_reporting``), per direction: I/Os, bytes,
bandwidth, IOPS, runtime, completion latency (each I/O timed around its await), bandwidth and
IOPS samples (fio's 500 ms windows) and CPU.  CPU is the process's user/sys time over the group,
shared among the group's clones in proportion to their I/O counts (one process runs them all).
``--output-format json`` writes fio's JSON schema, so tools that read fio's JSON read ours.
"""
from __future__ import annotations

import array
import collections
import datetime
import itertools
import math
import operator
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ioengine.ioprio import IoPrioClass, ioprio_class

from ..options import ReactorOptions
from .ioplan import DIRS, READ, TRIM, WRITE
from .jobfile import JobSpec
from .workloads import percentile_index

#: fio's default clat percentile list.
FIO_PERCENTILES = (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9,
                   99.95, 99.99)
#: fio's bandwidth / IOPS sampling period (bw_avg_time, iops_avg_time), ms.
SAMPLE_MS = 500


def engine_version() -> str:
    from importlib import metadata

    try:
        return "ioengine-" + metadata.version("ioengine")
    except metadata.PackageNotFoundError:
        return "ioengine-unknown"


@dataclass(slots=True)
class CloneRun:
    """One clone of one job: what it did."""

    job: JobSpec
    clone: int
    group: int
    path: str  # its first file
    number: int = 1  # fio's thread number (1-based, over the whole file): seeds and log names
    paths: list[str] = field(default_factory=list)
    #: Completion latencies (ns) of reads and writes: 8 bytes a sample, so long runs stay small.
    lat: tuple[array.array, ...] = field(default_factory=lambda: tuple(array.array("q") for _ in DIRS))
    #: Completion times (ns since the clock started) — for the bw/iops samples and the logs.
    at: tuple[array.array, ...] = field(default_factory=lambda: tuple(array.array("q") for _ in DIRS))
    #: Offsets and sizes of each I/O, kept only when a log needs them (or the sizes vary).
    offs: tuple[array.array, ...] | None = None
    sizes: tuple[array.array, ...] | None = None
    #: The ioprio of each I/O, kept only when a log needs it and the job sets priorities.
    prios: tuple[array.array, ...] | None = None
    io_bytes: list[int] = field(default_factory=lambda: [0, 0, 0])
    regions: list[tuple[int, int]] = field(default_factory=list)  # per file: (start, length)
    file_sizes: list[int] = field(default_factory=list)  # per file, at preflight
    runtime_ns: int = 0
    #: Per direction, the time of the phases that did it (fio's update_runtime: a verify job's
    #: writes over its write passes, its reads over the verify passes); None: the whole runtime.
    dir_runtime_ns: list[int] | None = None
    #: steady state: what the monitor saw (fio's JSON "steadystate"), None without ss=.
    steady: dict[str, Any] | None = None
    latency_depth: int = 0  # latency_target: the depth found (0: not used)
    shard: int = 0  # the shard that ran it (--smp)
    error: int = 0
    error_text: str = ""
    total_err: int = 0  # errors continue_on_error went on after (and the fatal one, if any)
    verify_errors: list[str] = field(default_factory=list)
    usr_s: float = 0.0
    sys_s: float = 0.0
    direct: bool = True

    def __post_init__(self) -> None:
        if not self.paths:
            self.paths = [self.path]

    @property
    def start(self) -> int:
        return self.regions[0][0] if self.regions else 0

    @property
    def length(self) -> int:
        return self.regions[0][1] if self.regions else 0

    def ios(self, d: int) -> int:
        return len(self.lat[d])

    def bytes(self, d: int) -> int:
        return self.io_bytes[d]

    @property
    def total_ios(self) -> int:
        return sum(len(a) for a in self.lat)

    def fail(self, errno: int, text: str) -> None:
        if not self.error:  # the first error is the job's (fio stops at it)
            self.error, self.error_text = errno, text

    def reset_stats(self) -> None:
        """End of ramp_time: what was done so far does not count."""
        for arrs in (self.lat, self.at, self.offs, self.sizes, self.prios):
            if arrs is not None:
                for a in arrs:
                    del a[:]
        self.io_bytes[:] = [0, 0, 0]


@dataclass(slots=True)
class JobsRun:
    groups: list[list[CloneRun]]  # one list of clones per stonewall group
    backend: str  # the reactor backend that carried the I/O
    options: ReactorOptions
    started: float  # time.time() at the start
    jobs: list[JobSpec] = field(default_factory=list)
    shards: int = 1


# ------------------------------------------------------------------------------------------
# Reporting: entries (one per clone, or per group with group_reporting), text and JSON


def _window_samples(clones: list[CloneRun], d: int) -> tuple[list[float], list[float]]:
    """fio's bandwidth (KiB/s) and IOPS samples: one per full SAMPLE_MS window of each clone; a
    group_reporting entry adds its clones' samples window by window (the group's bandwidth)."""
    per_window_bytes: dict[int, int] = {}
    per_window_ios: dict[int, int] = {}
    step = SAMPLE_MS * 1_000_000
    for c in clones:
        full = c.runtime_ns // step
        sizes = c.sizes[d] if c.sizes is not None else None
        bs = c.job.block_sizes(d)[0]
        if sizes is None:  # one size: the windows' counts, in C (a run has millions of I/Os)
            for k, count in collections.Counter(map(operator.floordiv, c.at[d], itertools.repeat(step))).items():
                if k < full:
                    per_window_ios[k] = per_window_ios.get(k, 0) + count
                    per_window_bytes[k] = per_window_bytes.get(k, 0) + count * bs
        else:
            for t, size in zip(c.at[d], sizes):
                k = t // step
                if k >= full:
                    continue
                per_window_ios[k] = per_window_ios.get(k, 0) + 1
                per_window_bytes[k] = per_window_bytes.get(k, 0) + size
        for k in range(full):
            per_window_ios.setdefault(k, 0)
            per_window_bytes.setdefault(k, 0)
    keys = sorted(per_window_ios)
    scale = 1000.0 / SAMPLE_MS
    return ([per_window_bytes[k] * scale / 1024 for k in keys], [per_window_ios[k] * scale for k in keys])


def _summary(xs: list[float]) -> tuple[float, float, float, float]:
    if not xs:
        return 0.0, 0.0, 0.0, 0.0
    mean = sum(xs) / len(xs)
    dev = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return min(xs), max(xs), mean, dev


@dataclass(slots=True)
class DirReport:
    ios: int
    io_bytes: int
    runtime_ms: int
    lat_sorted: list[int]
    bw_samples: list[float] = field(default_factory=list)  # KiB/s
    iops_samples: list[float] = field(default_factory=list)

    @property
    def iops(self) -> float:
        return self.ios * 1000.0 / self.runtime_ms if self.runtime_ms else 0.0

    @property
    def bw_bytes(self) -> float:
        return self.io_bytes * 1000.0 / self.runtime_ms if self.runtime_ms else 0.0

    def stats(self) -> tuple[int, int, float, float]:
        s = self.lat_sorted
        if not s:
            return 0, 0, 0.0, 0.0
        n = len(s)
        total = sum(s)
        # exact in integers, summed in C: a run has millions of I/Os
        var = (n * sum(map(operator.mul, s, s)) - total * total) / (n * (n - 1)) if n > 1 else 0.0
        return s[0], s[-1], total / n, math.sqrt(var)

    def percentile(self, p: float) -> int:
        return self.lat_sorted[percentile_index(len(self.lat_sorted), p)]


@dataclass(slots=True)
class Entry:
    name: str
    groupid: int
    clones: list[CloneRun]
    _dirs: dict[int, DirReport] = field(default_factory=dict)

    @property
    def job(self) -> JobSpec:
        return self.clones[0].job

    @property
    def error(self) -> int:
        return next((c.error for c in self.clones if c.error), 0)

    @property
    def runtime_ms(self) -> int:
        """fio's job_runtime: the clones' run times summed (the base of usr/sys_cpu)."""
        return sum(_ms(c.runtime_ns, c.total_ios) for c in self.clones)

    def direction(self, d: int) -> DirReport:
        if d in self._dirs:
            return self._dirs[d]
        lat = sorted(itertools.chain.from_iterable(c.lat[d] for c in self.clones))
        runtime = max((_ms(c.runtime_ns if c.dir_runtime_ns is None else c.dir_runtime_ns[d], len(c.lat[d]))
                       for c in self.clones), default=0)
        bw, iops = _window_samples(self.clones, d) if lat else ([], [])
        rep = DirReport(len(lat), sum(c.bytes(d) for c in self.clones), runtime if lat else 0, lat, bw, iops)
        self._dirs[d] = rep
        return rep

    @property
    def usr_cpu(self) -> float:
        rt = self.runtime_ms
        return sum(c.usr_s for c in self.clones) * 1e5 / rt if rt else 0.0

    @property
    def sys_cpu(self) -> float:
        rt = self.runtime_ms
        return sum(c.sys_s for c in self.clones) * 1e5 / rt if rt else 0.0


def _ms(ns: int, ios: int) -> int:
    ms = round(ns / 1e6)
    return max(1, ms) if ios else ms


def entries_of(runs: list[list[CloneRun]]) -> list[Entry]:
    """fio's reporting units: each clone on its own, except that consecutive clones of
    ``group_reporting`` jobs in one group (fio's groupid: stonewall or new_group starts one) are
    merged (named after the first).

    Not copied: fio 3.33 also folds a ``group_reporting`` job into the entry of a job *without*
    it just before it in the same group, and then prints an empty entry at the end."""
    out: list[Entry] = []
    for group in runs:
        merged: Entry | None = None
        for c in group:
            if c.job.group_reporting:
                if merged is None or merged.groupid != c.group:
                    merged = Entry(c.job.name, c.group, [])
                    out.append(merged)
                merged.clones.append(c)
            else:
                merged = None
                out.append(Entry(c.job.name, c.group, [c]))
    return out


def _lat_json(d: DirReport, with_percentiles: bool) -> dict[str, Any]:
    lo, hi, mean, dev = d.stats()
    out: dict[str, Any] = {"min": lo, "max": hi, "mean": mean, "stddev": dev, "N": d.ios}
    if with_percentiles and d.ios:
        out["percentile"] = {f"{p:.6f}": d.percentile(p) for p in FIO_PERCENTILES}
    return out


def _dir_json(d: DirReport, group_bw_kib: float) -> dict[str, Any]:
    bmin, bmax, bmean, bdev = _summary(d.bw_samples)
    imin, imax, imean, idev = _summary(d.iops_samples)
    return {
        "io_bytes": d.io_bytes, "io_kbytes": d.io_bytes // 1024, "bw_bytes": round(d.bw_bytes),
        "bw": round(d.bw_bytes / 1024), "iops": d.iops, "runtime": d.runtime_ms, "total_ios": d.ios,
        "short_ios": 0, "drop_ios": 0,
        "slat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0},
        "clat_ns": _lat_json(d, True),
        # ioengine times an I/O from the call to the task's resumption: no separate submission
        # latency, so lat equals clat.
        "lat_ns": _lat_json(d, False),
        "bw_min": round(bmin), "bw_max": round(bmax),
        "agg_pct": (bmean / group_bw_kib * 100.0) if group_bw_kib else 0.0,
        "bw_mean": bmean, "bw_dev": bdev, "bw_samples": len(d.bw_samples),
        "iops_min": round(imin), "iops_max": round(imax), "iops_mean": imean, "iops_stddev": idev,
        "iops_samples": len(d.iops_samples),
    }


#: fio's latency histogram buckets (upper bounds, in the unit of each key).
_LAT_BUCKETS = ("2", "4", "10", "20", "50", "100", "250", "500", "750", "1000")
_MS_BUCKETS = (*_LAT_BUCKETS, "2000", ">=2000")
_DEPTH_KEYS = ("1", "2", "4", "8", "16", "32", ">=64")
_SUBMIT_KEYS = ("0", "4", "8", "16", "32", "64", ">=64")


def _latency_buckets(lats: list[int]) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """fio's latency_ns / latency_us / latency_ms: percent of I/Os under each bound."""
    import bisect

    n = len(lats)
    out: list[dict[str, float]] = []
    prev_count = 0
    for scale, keys in ((1, _LAT_BUCKETS), (1000, _LAT_BUCKETS), (1_000_000, _MS_BUCKETS)):
        d: dict[str, float] = {}
        for k in keys:
            if k.startswith(">="):
                count = n
            else:
                count = bisect.bisect_right(lats, int(k) * scale) if n else 0
            d[k] = (count - prev_count) * 100.0 / n if n else 0.0
            prev_count = count
        out.append(d)
    return out[0], out[1], out[2]


def _depth_json(depth: int) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    # ioengine keeps exactly `depth` I/Os in flight per clone, and each coroutine submits one.
    level = {k: 0.0 for k in _DEPTH_KEYS}
    key = ">=64" if depth >= 64 else str(1 << (depth.bit_length() - 1))
    level[key] = 100.0
    submit = {k: 0.0 for k in _SUBMIT_KEYS}
    submit["4"] = 100.0  # fio's "4" bucket holds batches of 1 to 4 I/Os
    return level, submit, dict(submit)


def _job_options(job: JobSpec) -> dict[str, str]:
    """fio's "job options": what the job's own section set (not [global]'s)."""
    return {k: v for k, v in job.written.items() if k in job.own}


def to_json(run: JobsRun) -> dict[str, Any]:
    """fio's JSON document (``--output-format=json``) for the fields ioengine measures."""
    now = time.time()
    jobs = []
    entries = entries_of(run.groups)
    group_bw: dict[tuple[int, int], float] = {}
    for e in entries:
        for d in DIRS:
            group_bw[(e.groupid, d)] = group_bw.get((e.groupid, d), 0.0) + e.direction(d).bw_bytes / 1024
    for e in entries:
        busy = [d for d in DIRS if e.direction(d).ios]
        lats = (e.direction(busy[0]).lat_sorted if len(busy) == 1  # sorted once already
                else sorted(itertools.chain.from_iterable(c.lat[d] for c in e.clones for d in DIRS)))
        lat_ns, lat_us, lat_ms = _latency_buckets(lats)
        level, submit, complete = _depth_json(e.job.depth)
        entry: dict[str, Any] = {
            "jobname": e.name, "groupid": e.groupid, "error": e.error, "eta": 0,
            "elapsed": max(1, round(now - run.started)), "job options": _job_options(e.job),
            "read": _dir_json(e.direction(READ), group_bw[(e.groupid, READ)]),
            "write": _dir_json(e.direction(WRITE), group_bw[(e.groupid, WRITE)]),
            "trim": _dir_json(e.direction(TRIM), group_bw[(e.groupid, TRIM)]),
            "sync": {"total_ios": 0, "lat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0}},
            "job_runtime": e.runtime_ms, "usr_cpu": e.usr_cpu, "sys_cpu": e.sys_cpu,
            "ctx": 0, "majf": 0, "minf": 0,
            "iodepth_level": level, "iodepth_submit": submit, "iodepth_complete": complete,
            "latency_ns": lat_ns, "latency_us": lat_us, "latency_ms": lat_ms,
            # latency_target: the depth the search settled on (fio's latency_depth), target in ns,
            # window in us, as fio writes them.
            "latency_depth": max((c.latency_depth for c in e.clones), default=0) or e.job.depth,
            "latency_target": round(e.job.latency_target_s * 1e9),
            "latency_percentile": e.job.latency_percentile,
            "latency_window": round(e.job.latency_window_s * 1e6),
        }
        if e.job.description is not None:
            entry["desc"] = e.job.description
        if e.job.continue_on_error:  # fio adds these two with continue_on_error
            entry["total_err"] = sum(c.total_err for c in e.clones)
            entry["first_error"] = e.error
        steady = next((c.steady for c in e.clones if c.steady is not None), None)
        if steady is not None:
            entry["steadystate"] = steady
        jobs.append(entry)
    glob: dict[str, str] = {}
    for job in run.jobs:
        glob.update(job.global_written)
    return {
        "fio version": engine_version(),
        "timestamp": int(now), "timestamp_ms": int(now * 1000), "time": time.ctime(now),
        "global options": glob,
        "ioengine": {"backend": run.backend, "reactor_options": run.options.as_dict()},
        "jobs": jobs,
        "disk_util": [],
    }


# -- fio's log files --------------------------------------------------------------------------


def write_logs(run: JobsRun) -> list[str]:
    """write_bw_log / write_lat_log / write_iops_log in fio's format: ``time (ms), value, data
    direction (0 read, 1 write), block size, [offset (log_offset),] priority`` per line (the
    priority: the request's ioprio as 0x.... with log_prio, else 1 for the RT class, 0 for the
    others), one file per clone
    (PREFIX_bw.N.log etc., N fio's job number).  Without log_avg_msec, one line per I/O (bw in
    KiB/s over that I/O's latency, as fio's per-I/O samples); with it, averages per period."""
    written: list[str] = []
    for group in run.groups:
        for c in group:
            job = c.job
            for opt, kinds in ((job.write_lat_log, ("lat", "clat", "slat")), (job.write_bw_log, ("bw",)),
                               (job.write_iops_log, ("iops",))):
                if opt is None:
                    continue
                prefix = opt or job.name
                for kind in kinds:
                    path = f"{prefix}_{kind}.{c.number}.log"
                    with open(path, "w", encoding="ascii") as f:
                        f.writelines(_log_lines(c, kind, job.log_avg_msec))
                    written.append(path)
    return written


def _log_lines(c: CloneRun, kind: str, avg_ms: int) -> list[str]:
    rows: list[tuple[int, int, int, int, int, int]] = []  # (time ns, value, ddir, bs, offset, ioprio)
    job = c.job
    default_prio = job.ioprio
    for d in DIRS:
        sizes = c.sizes[d] if c.sizes is not None else None
        offs = c.offs[d] if c.offs is not None else None
        prios = c.prios[d] if c.prios is not None else None
        bs = c.job.block_sizes(d)[0]
        for i, (t, lat) in enumerate(zip(c.at[d], c.lat[d])):
            n = sizes[i] if sizes is not None else bs
            if kind in ("lat", "clat"):
                v = lat
            elif kind == "slat":
                v = 0
            elif kind == "bw":
                v = round(n * 1e9 / max(lat, 1) / 1024)
            else:
                v = 1
            rows.append((t, v, d, n, offs[i] if offs is not None else 0,
                         prios[i] if prios is not None else default_prio))
    rows.sort()
    if not avg_ms:
        return [f"{t // 1_000_000}, {v}, {d}, {n}, {f'{o}, ' if job.log_offset else ''}{_log_prio(job, p)}\n"
                for t, v, d, n, o, p in rows]
    # Averaged: per period and direction, the mean (lat) or the rate over the period (bw, iops).
    step = avg_ms * 1_000_000
    acc: dict[tuple[int, int], list[int]] = {}
    for t, v, d, n, _, _ in rows:
        a = acc.setdefault((t // step, d), [0, 0, 0])
        a[0] += v
        a[1] += 1
        a[2] += n
    out = []
    for (k, d), (total, count, nbytes) in sorted(acc.items()):
        if kind in ("lat", "clat", "slat"):
            v = total // count
        elif kind == "bw":
            v = round(nbytes * 1000 / avg_ms / 1024)
        else:
            v = round(count * 1000 / avg_ms)
        # fio's averaged samples carry no offset or priority (zeros)
        out.append(f"{(k + 1) * avg_ms}, {v}, {d}, 0, {'0, ' if job.log_offset else ''}{_log_prio(job, 0)}\n")
    return out


def _log_prio(job: JobSpec, ioprio: int) -> str:
    """fio's priority column: the ioprio value with log_prio, else whether it is of the RT class."""
    if job.log_prio:
        return f"0x{ioprio:04x}"
    return "1" if ioprio_class(ioprio) == IoPrioClass.RT else "0"


# -- fio-like text ---------------------------------------------------------------------------


def _num2str(x: float, base: int = 1000, unit: str = "") -> str:
    """fio's short numbers: at most 4 significant digits, then a unit prefix (k/M/G or Ki/Mi/Gi)."""
    prefixes = ["", "k", "M", "G", "T", "P"] if base == 1000 else ["", "Ki", "Mi", "Gi", "Ti", "Pi"]
    i = 0
    while abs(x) >= 10000 and i < len(prefixes) - 1:
        x /= base
        i += 1
    if i == 0:
        return f"{x:.0f}{unit}" if x == int(x) or x >= 100 else f"{x:.1f}{unit}" if x >= 10 else f"{x:.2f}{unit}"
    digits = len(str(int(x)))
    decimals = max(0, 3 - digits)
    return f"{x:.{decimals}f}{prefixes[i]}{unit}"


def mib(n: int) -> str:
    return f"{n >> 20}MiB" if n % (1 << 20) == 0 else f"{n >> 10}KiB" if n % 1024 == 0 else f"{n}B"


def _iec(n: float) -> str:
    return _num2str(n, 1024)


def _si(n: float) -> str:
    return _num2str(n, 1000)


def _lat_unit(lo: float, hi: float) -> tuple[str, float]:
    # fio's rule (stat.c): nsec by default, usec / msec when the values are large enough.
    if lo > 2_000_000 and hi > 99_999_999:
        return "msec", 1e6
    if lo > 2000 and hi > 99_999:
        return "usec", 1e3
    return "nsec", 1.0


def _text_direction(d: DirReport, label: str, out: list[str]) -> None:
    out.append(f"  {label}: IOPS={_si(d.iops)}, BW={_iec(d.bw_bytes)}B/s ({_si(d.bw_bytes)}B/s)"
               f"({_iec(d.io_bytes)}B/{d.runtime_ms}msec)")
    if not d.ios:
        return
    lo, hi, mean, dev = d.stats()
    unit, div = ("usec", 1e3) if lo >= 1000 else ("nsec", 1.0)
    if lo >= 1_000_000:
        unit, div = "msec", 1e6
    out.append(f"    clat ({unit}): min={_si(round(lo / div))}, max={_si(round(hi / div))}, avg={mean / div:.2f}, "
               f"stdev={dev / div:.2f}")
    vals = [d.percentile(p) for p in FIO_PERCENTILES]
    unit, div = _lat_unit(vals[0], vals[-1])
    out.append(f"    clat percentiles ({unit}):")
    cells = [f"{p:5.2f}th=[{round(v / div):5d}]" for p, v in zip(FIO_PERCENTILES, vals)]
    for i in range(0, len(cells), 4):
        chunk = cells[i:i + 4]
        tail = "," if i + 4 < len(cells) else ""
        out.append("     | " + ", ".join(chunk) + tail)


def to_text(run: JobsRun) -> str:
    """fio's normal output, for the fields ioengine measures."""
    runs, backend = run.groups, run.backend
    lines: list[str] = []
    seen: set[str] = set()
    for group in runs:
        for c in group:
            j = c.job
            if j.name in seen:
                continue
            seen.add(j.name)
            (rlo, rhi), (wlo, whi), (tlo, thi) = (j.block_sizes(d) for d in DIRS)
            engine = j.ioengine or "psync"
            lines.append(f"{j.name}: (g={c.group}): rw={j.rw}, bs=(R) {rlo}B-{rhi}B, (W) {wlo}B-{whi}B, "
                         f"(T) {tlo}B-{thi}B, ioengine={engine} (ioengine/{backend}), iodepth={j.depth}")
    nclones = sum(len(g) for g in runs)
    lines.append(engine_version())
    where = f"on {run.shards} shards" if run.shards > 1 else "in one reactor"
    lines.append(f"Starting {nclones} job{'s' if nclones != 1 else ''} {where} ({backend})")
    lines.append("")
    entries = entries_of(runs)
    date = datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    for g in sorted({e.groupid for e in entries}):
        mine = [e for e in entries if e.groupid == g]
        for e in mine:
            lines.append(f"{e.name}: (groupid={e.groupid}, jobs={len(e.clones)}): err={e.error:2d}: "
                         f"pid={os.getpid()}: {date}")
            for c in e.clones:
                if c.error:
                    lines.append(f"  error: err={c.error} ({os.strerror(c.error)}): {c.error_text}")
                if c.job.direct and not c.direct:
                    lines.append(f"  note: {c.path!r} is on a filesystem without O_DIRECT: buffered I/O")
            for d, label, does in ((READ, " read", e.job.does_reads), (WRITE, "write", e.job.does_writes),
                                   (TRIM, "  trim", e.job.does_trims)):
                rep = e.direction(d)
                if rep.ios or does:
                    _text_direction(rep, label, lines)
            steady = next((c.steady for c in e.clones if c.steady is not None), None)
            if steady is not None:  # fio's line: whether the window met the criterion
                data = steady.get("data", {})
                lines.append(f"  steadystate  : attained={'yes' if steady['attained'] else 'no'}, "
                             f"bw={_iec(data.get('bw_mean', 0.0))}B/s, iops={_si(data.get('iops_mean', 0.0))}, "
                             f"{steady['ss']} criterion={steady['criterion']:.2f}"
                             f"{'%' if steady['ss'].endswith('%') else ''}")
            rts = e.runtime_ms
            lines.append(f"  cpu          : usr={e.usr_cpu:.2f}%, sys={e.sys_cpu:.2f}%, ctx=0, majf=0, minf=0")
            if e.job.continue_on_error:
                lines.append(f"  errors       : total={sum(c.total_err for c in e.clones)}, first_error={e.error}"
                             f"/<{os.strerror(e.error) if e.error else 'Success'}>")
            r, w, tr = (e.direction(d) for d in DIRS)
            lines.append(f"  IO depths    : {e.job.depth}=100.0% (ioengine keeps {e.job.depth} I/O"
                         f"{'s' if e.job.depth > 1 else ''} in flight per clone)")
            lines.append(f"     issued rwts: total={r.ios},{w.ios},{tr.ios},0 short=0,0,0,0 dropped=0,0,0,0")
            if rts == 0 and not e.error:
                lines.append("  (no I/O measured)")
            lines.append("")
        lines.append(f"Run status group {g} (all jobs):")
        for d, label in ((READ, "   READ"), (WRITE, "  WRITE"), (TRIM, "   TRIM")):
            reps = [e.direction(d) for e in mine]
            reps = [x for x in reps if x.ios]
            if not reps:
                continue
            io = sum(x.io_bytes for x in reps)
            run_lo = min(x.runtime_ms for x in reps)
            run_hi = max(x.runtime_ms for x in reps)
            bw = io * 1000 / run_hi if run_hi else 0.0
            bws = [x.bw_bytes for x in reps]
            lines.append(f"{label}: bw={_iec(bw)}B/s ({_si(bw)}B/s), {_iec(min(bws))}B/s-{_iec(max(bws))}B/s "
                         f"({_si(min(bws))}B/s-{_si(max(bws))}B/s), io={_iec(io)}B ({_si(io)}B), "
                         f"run={run_lo}-{run_hi}msec")
        lines.append("")
    return "\n".join(lines)
