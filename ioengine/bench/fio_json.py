"""Parse fio's JSON output (``--output-format=json`` / ``json+``) and run fio.

The benchmark harness compares ioengine with fio on the same file, so it needs fio's numbers
as typed values, whatever fio version the user has installed.  This module:

* turns fio's JSON into dataclasses (:class:`FioResult` → :class:`FioJob` →
  :class:`FioDirStats` → :class:`LatencyStats`), with every latency in **nanoseconds** and
  every bandwidth in **bytes/s**, whichever units the installed fio used;
* tolerates version differences: fio < 3.0 reported ``clat``/``slat``/``lat`` in µs,
  ``io_bytes`` in KiB and ``bw`` only in KiB/s, padded its percentile lists with ``"0.00": 0``
  entries and had no ``job_runtime``; newer fields that are missing get neutral defaults;
* skips whatever fio printed before its JSON document (``fio: ...`` warnings go to stdout);
* runs fio (:func:`run_fio`) and turns every failure mode into an exception that says what to do.

It imports nothing from ``ioengine`` so it stays importable (and testable) on its own.
"""

from __future__ import annotations

import errno as _errno
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DIRECTIONS",
    "DiskUtil",
    "FioDirStats",
    "FioError",
    "FioJob",
    "FioJobError",
    "FioNotFoundError",
    "FioOutputError",
    "FioResult",
    "LatencyStats",
    "fio_version",
    "merge_dir_stats",
    "merge_latency",
    "parse_fio_json",
    "run_fio",
]

#: The per-direction sections fio writes for every job.
DIRECTIONS: tuple[str, ...] = ("read", "write", "trim")

# How many lines of fio's output an error message quotes.
_QUOTE_LINES = 12
_QUOTE_WIDTH = 200


# --------------------------------------------------------------------------------------------
# Errors


class FioError(RuntimeError):
    """Base class of everything that can go wrong while running fio or reading its output."""


class FioNotFoundError(FioError):
    """The fio executable is not installed (or not on PATH)."""


class FioOutputError(FioError):
    """fio's output is not the JSON document we asked for."""


class FioJobError(FioError):
    """fio ran, but at least one job reported a non-zero error (an errno value).

    ``job_name`` and ``errno`` describe the first failing job; ``failed`` lists every
    ``(job name, errno)``; ``result`` is the parsed output, should the caller still want it.
    """

    def __init__(
        self,
        message: str,
        *,
        job_name: str,
        errno: int,
        failed: list[tuple[str, int]],
        result: FioResult,
    ) -> None:
        super().__init__(message)
        self.job_name = job_name
        self.errno = errno
        self.failed = failed
        self.result = result


# --------------------------------------------------------------------------------------------
# Data model


@dataclass(slots=True)
class LatencyStats:
    """One latency distribution (slat, clat or lat), in nanoseconds.

    ``percentiles`` maps the percentile (e.g. ``99.9``) to its value in ns, as fio reported it
    (fio reports clat percentiles by default; lat/slat only with ``lat_percentiles`` /
    ``slat_percentiles``).  ``bins`` is present with ``--output-format=json+`` only: fio's
    histogram, bucket value (ns) → number of samples; it lets percentiles fio did not list be
    computed, and lets histograms of several jobs be merged exactly.
    """

    min: float = 0.0
    max: float = 0.0
    mean: float = 0.0
    stddev: float = 0.0
    samples: int | None = None  # fio's "N"; absent before fio 3.x
    percentiles: dict[float, float] = field(default_factory=dict)
    bins: dict[float, int] | None = None

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile in ns (``p`` in 0..100, e.g. ``99.9``).

        Uses fio's own figure when it reported that percentile, else computes it from the
        json+ histogram the way fio does.  Raises :class:`ValueError` when neither is available
        (the message lists what fio did report and how to get more).
        """
        if not 0.0 < p <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {p!r}")
        for key, value in self.percentiles.items():
            if math.isclose(key, p, rel_tol=0.0, abs_tol=1e-6):
                return value
        if self.bins:
            return _percentile_from_bins(self.bins, p)
        if self.samples == 0 or (self.samples is None and not self.percentiles and not self.max):
            raise ValueError(
                f"no latency samples: no I/O completed in this direction, so there is no "
                f"{p:g}th percentile"
            )
        reported = ", ".join(f"{k:g}" for k in sorted(self.percentiles)) or "none"
        raise ValueError(
            f"fio did not report the {p:g}th percentile (it reported: {reported}); ask for it "
            f"with --percentile_list=...:{p:g}, or use --output-format=json+ so it can be computed"
            f" from the histogram. Percentiles of separately reported jobs cannot be merged "
            f"exactly: run fio with --group_reporting, or use json+."
        )

    @property
    def p50(self) -> float:
        return self.percentile(50.0)

    @property
    def p99(self) -> float:
        return self.percentile(99.0)

    @property
    def p999(self) -> float:
        return self.percentile(99.9)


@dataclass(slots=True)
class FioDirStats:
    """One direction (read, write, trim or mixed) of one job.

    ``runtime_ms`` is the time this direction was active; ``iops`` and ``bw_bytes`` are fio's
    own figures (over that runtime).  ``io_bytes``/``bw_bytes`` are converted to bytes for old
    fio versions that reported KiB.  ``raw`` is fio's dict, untouched.
    """

    io_bytes: int = 0
    bw_bytes: float = 0.0  # bytes/s
    iops: float = 0.0
    runtime_ms: int = 0
    total_ios: int = 0
    short_ios: int | None = None
    drop_ios: int | None = None
    slat_ns: LatencyStats = field(default_factory=LatencyStats)
    clat_ns: LatencyStats = field(default_factory=LatencyStats)
    lat_ns: LatencyStats = field(default_factory=LatencyStats)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float:
        """Bandwidth in MB/s (10**6 bytes), the unit the comparison tables use."""
        return self.bw_bytes / 1e6

    @property
    def mib_per_s(self) -> float:
        return self.bw_bytes / float(1 << 20)


@dataclass(slots=True)
class FioJob:
    """One entry of fio's ``jobs`` list.

    Without ``group_reporting`` each clone of a ``numjobs=N`` job is its own entry; with it,
    fio merges the group into one entry.  ``runtime_ms`` is fio's ``job_runtime``: the run time
    of the threads merged into this entry, summed over them — the base that ``usr_cpu`` and
    ``sys_cpu`` (percentages) are relative to.  Old fio without ``job_runtime``: the longest
    direction's runtime.
    """

    name: str
    groupid: int = 0
    error: int = 0
    runtime_ms: int = 0
    usr_cpu: float = 0.0  # percent of runtime_ms
    sys_cpu: float = 0.0
    ctx: int = 0
    majf: int = 0
    minf: int = 0
    read: FioDirStats = field(default_factory=FioDirStats)
    write: FioDirStats = field(default_factory=FioDirStats)
    trim: FioDirStats = field(default_factory=FioDirStats)
    mixed: FioDirStats | None = None  # only with unified_rw_reporting
    options: dict[str, str] = field(default_factory=dict)  # fio's "job options"
    description: str | None = None
    elapsed_s: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def direction(self, name: str) -> FioDirStats:
        """``read``/``write``/``trim``/``mixed`` section, or all directions merged (``all``)."""
        if name in DIRECTIONS:
            return getattr(self, name)
        if name == "mixed":
            if self.mixed is None:
                raise ValueError(
                    f"fio job {self.name!r} has no 'mixed' section "
                    f"(fio writes one only with unified_rw_reporting)"
                )
            return self.mixed
        if name == "all":
            if self.mixed is not None:
                return self.mixed
            return merge_dir_stats([self.read, self.write, self.trim], concurrent=True)
        raise ValueError(
            f"unknown direction {name!r}: expected one of read, write, trim, mixed, all"
        )

    @property
    def total_ios(self) -> int:
        if self.mixed is not None:
            return self.mixed.total_ios
        return self.read.total_ios + self.write.total_ios + self.trim.total_ios

    @property
    def cpu_seconds(self) -> float:
        """User + system CPU time of the job's I/O threads, in seconds."""
        return (self.usr_cpu + self.sys_cpu) / 100.0 * self.runtime_ms / 1000.0


@dataclass(slots=True)
class DiskUtil:
    """One entry of fio's ``disk_util`` list (block-device counters over the run)."""

    name: str
    read_ios: int = 0
    write_ios: int = 0
    read_merges: int = 0
    write_merges: int = 0
    read_ticks: int = 0
    write_ticks: int = 0
    in_queue: int = 0
    util: float = 0.0  # percent
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FioResult:
    """A whole fio run.  ``version`` is fio's own string, e.g. ``"fio-3.33"``."""

    version: str | None
    jobs: list[FioJob]
    disk_util: list[DiskUtil] = field(default_factory=list)
    timestamp: int | None = None
    global_options: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # Filled by run_fio(): what was run and what fio said on stderr.
    command: list[str] | None = None
    stderr: str = ""
    returncode: int | None = None

    @property
    def version_tuple(self) -> tuple[int, ...] | None:
        """``(3, 33)`` for ``"fio-3.33"``; None when unknown."""
        if not self.version:
            return None
        m = re.search(r"(\d+(?:\.\d+)*)", self.version)
        return tuple(int(x) for x in m.group(1).split(".")) if m else None

    def job(self, name: str) -> FioJob:
        """The first job called ``name`` (clones of ``numjobs`` share their name)."""
        for job in self.jobs:
            if job.name == name:
                return job
        names = ", ".join(repr(j.name) for j in self.jobs) or "none"
        raise KeyError(f"no fio job named {name!r} (jobs: {names})")

    def total(self, direction: str = "read") -> FioDirStats:
        """One direction summed over all jobs (``read``, ``write``, ``trim``, ``mixed``, ``all``).

        Jobs run concurrently (numjobs clones, or jobs of one group), so IOPS, bandwidth, bytes
        and I/O counts add up and the runtime is the longest one.  Latency min/max/mean/stddev
        are merged exactly (weighted by sample counts); percentiles only when that is possible:
        a single contributing job, or json+ histograms (see :func:`merge_latency`).  Stonewalled
        jobs run one after another, so summing their IOPS is meaningless: take them one by one.
        """
        if not self.jobs:
            raise ValueError("fio reported no jobs")
        return merge_dir_stats([job.direction(direction) for job in self.jobs], concurrent=True)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of all jobs' I/O threads."""
        return sum(job.cpu_seconds for job in self.jobs)

    def cpu_us_per_io(self) -> float | None:
        """CPU microseconds per completed I/O over all jobs and directions (None if no I/O)."""
        ios = sum(job.total_ios for job in self.jobs)
        return self.cpu_seconds() * 1e6 / ios if ios else None

    def failed_jobs(self) -> list[tuple[str, int]]:
        return [(job.name, job.error) for job in self.jobs if job.error]

    def raise_for_errors(self) -> None:
        """Raise :class:`FioJobError` if any job reported a non-zero error."""
        failed = self.failed_jobs()
        if not failed:
            return
        name, err = failed[0]
        code = _errno.errorcode.get(err)
        what = f"{code}: {os.strerror(err)}" if code else "unknown error"
        more = f" (and {len(failed) - 1} more failed jobs)" if len(failed) > 1 else ""
        msg = f"fio job {name!r} failed with error {err} ({what}){more}"
        if self.stderr.strip():
            msg += "\nfio's stderr:\n" + _quote(self.stderr)
        raise FioJobError(msg, job_name=name, errno=err, failed=failed, result=self)


# --------------------------------------------------------------------------------------------
# Parsing


def parse_fio_json(text: str | bytes) -> FioResult:
    """Parse what ``fio --output-format=json`` (or ``json+``) printed.

    Anything before the JSON document (fio prints some warnings on stdout) and after it is
    ignored.  Job errors are *not* raised here: see :meth:`FioResult.raise_for_errors`.
    Raises :class:`FioOutputError` when there is no fio JSON document in ``text``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # fio prints floats with printf("%f"), so a NaN comes out as "nan" or "-nan", which
    # is not JSON; rewrite such values (only in value position) to what Python accepts.
    text = _NON_FINITE.sub(_fix_non_finite, text)
    doc = _extract_json(text)
    try:
        return _result_from_dict(doc)
    except FioError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # A field of a shape fio never writes (found by fuzzing): one error type for all of them.
        raise FioOutputError(f"fio JSON has a field of an unexpected shape: {type(exc).__name__}: {exc}") from None


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


_NON_FINITE = re.compile(r"(:\s*|\[\s*|,\s*)(-?)(nan|inf)\b", re.IGNORECASE)


def _fix_non_finite(m: re.Match[str]) -> str:
    if m.group(3).lower() == "nan":
        return f"{m.group(1)}NaN"
    return f"{m.group(1)}{m.group(2)}Infinity"


def _extract_json(text: str) -> dict[str, Any]:
    decoder = json.JSONDecoder()
    # fio writes its document starting at column 0; a warning line could contain a '{' of
    # its own, so try every line that starts with one, then any '{' at all as a last resort.
    starts = [m.end() - 1 for m in re.finditer(r"^[ \t]*\{", text, re.MULTILINE)]
    first = text.find("{")
    if first >= 0 and first not in starts:
        starts.append(first)
    reason = "it contains no '{'" if not starts else ""
    for pos in starts:
        try:
            doc, _ = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            reason = reason or f"JSON error at line {exc.lineno} column {exc.colno}: {exc.msg}"
            continue
        if isinstance(doc, dict) and ("jobs" in doc or "client_stats" in doc):
            return doc
        reason = reason or "the JSON found has no 'jobs' list"
    if not text.strip():
        raise FioOutputError("fio printed nothing on stdout where a JSON document was expected")
    raise FioOutputError(
        f"fio's output is not a fio JSON document ({reason}). First lines of what fio printed:\n"
        + _quote(text)
    )


def _result_from_dict(doc: Mapping[str, Any]) -> FioResult:
    if "jobs" in doc:
        job_dicts = doc["jobs"]
    else:
        # client/server mode (fio --client): per-host jobs plus an "All clients" summary.
        job_dicts = [j for j in _list(doc.get("client_stats"))
                     if isinstance(j, Mapping) and j.get("jobname") != "All clients"]
    if not isinstance(job_dicts, list):
        raise FioOutputError(f"fio JSON has a 'jobs' entry that is not a list: {job_dicts!r:.100}")
    return FioResult(
        version=_str_or_none(doc.get("fio version")),
        jobs=[_job_from_dict(j) for j in job_dicts if isinstance(j, Mapping)],
        disk_util=[_disk_from_dict(d) for d in _list(doc.get("disk_util")) if isinstance(d, Mapping)],
        timestamp=_int_or_none(doc.get("timestamp")),
        global_options={str(k): str(v) for k, v in _mapping(doc.get("global options")).items()},
        raw=dict(doc),
    )


def _job_from_dict(d: Mapping[str, Any]) -> FioJob:
    dirs = {name: _dir_from_dict(d.get(name)) for name in DIRECTIONS}
    mixed = _dir_from_dict(d["mixed"]) if isinstance(d.get("mixed"), Mapping) else None
    runtime = _int_or_none(d.get("job_runtime"))
    if runtime is None:  # fio < 3.x: no job_runtime; the longest direction is the best estimate
        runtime = max([s.runtime_ms for s in dirs.values()] + [mixed.runtime_ms if mixed else 0])
    return FioJob(
        name=str(d.get("jobname", "")),
        groupid=_int(d.get("groupid")),
        error=_int(d.get("error")),
        runtime_ms=runtime,
        usr_cpu=_float(d.get("usr_cpu")),
        sys_cpu=_float(d.get("sys_cpu")),
        ctx=_int(d.get("ctx")),
        majf=_int(d.get("majf")),
        minf=_int(d.get("minf")),
        read=dirs["read"],
        write=dirs["write"],
        trim=dirs["trim"],
        mixed=mixed,
        options={str(k): str(v) for k, v in _mapping(d.get("job options")).items()},
        description=_str_or_none(d.get("desc")),
        elapsed_s=_int_or_none(d.get("elapsed")),
        raw=dict(d),
    )


def _dir_from_dict(d: Any) -> FioDirStats:
    if not isinstance(d, Mapping):
        return FioDirStats()
    # fio >= 3.0 has io_kbytes/bw_bytes and *_ns latencies; before, io_bytes was in KiB.
    modern = "io_kbytes" in d or "bw_bytes" in d or "clat_ns" in d or "lat_ns" in d
    io_bytes = _int(d.get("io_bytes")) * (1 if modern else 1024)
    if "bw_bytes" in d:
        bw_bytes = _float(d.get("bw_bytes"))
    else:
        bw_bytes = _float(d.get("bw")) * 1024.0  # "bw" is KiB/s in every version
    runtime = _int(d.get("runtime"))
    iops = _float(d.get("iops"))
    slat, clat, lat = (_latency(d, name) for name in ("slat", "clat", "lat"))
    total = _int_or_none(d.get("total_ios"))
    if total is None:  # very old fio: derive it (clat has one sample per completed I/O)
        if clat.samples is not None:
            total = clat.samples
        else:
            total = round(iops * runtime / 1000.0)
    return FioDirStats(
        io_bytes=io_bytes,
        bw_bytes=bw_bytes,
        iops=iops,
        runtime_ms=runtime,
        total_ios=total,
        short_ios=_int_or_none(d.get("short_ios")),
        drop_ios=_int_or_none(d.get("drop_ios")),
        slat_ns=slat,
        clat_ns=clat,
        lat_ns=lat,
        raw=dict(d),
    )


def _latency(d: Mapping[str, Any], name: str) -> LatencyStats:
    if isinstance(d.get(f"{name}_ns"), Mapping):
        src, scale = d[f"{name}_ns"], 1.0
    elif isinstance(d.get(name), Mapping):
        src, scale = d[name], 1000.0  # fio < 3.0 reported microseconds
    else:
        return LatencyStats()
    percentiles: dict[float, float] = {}
    for key, value in (src.get("percentile") or {}).items():
        try:
            p = float(key)
        except ValueError:
            continue
        if p <= 0.0:  # fio 2.x padded the list with "0.00": 0 entries
            continue
        percentiles[p] = _float(value) * scale
    bins = None
    if isinstance(src.get("bins"), Mapping):
        bins = {}
        for key, count in src["bins"].items():
            try:
                bins[float(key) * scale] = _int(count)
            except ValueError:
                continue
    return LatencyStats(
        min=_float(src.get("min")) * scale,
        max=_float(src.get("max")) * scale,
        mean=_float(src.get("mean")) * scale,
        stddev=_float(src.get("stddev")) * scale,
        samples=_int_or_none(src.get("N")),
        percentiles=dict(sorted(percentiles.items())),
        bins=bins,
    )


def _disk_from_dict(d: Mapping[str, Any]) -> DiskUtil:
    return DiskUtil(
        name=str(d.get("name", "")),
        read_ios=_int(d.get("read_ios")),
        write_ios=_int(d.get("write_ios")),
        read_merges=_int(d.get("read_merges")),
        write_merges=_int(d.get("write_merges")),
        read_ticks=_int(d.get("read_ticks")),
        write_ticks=_int(d.get("write_ticks")),
        in_queue=_int(d.get("in_queue")),
        util=_float(d.get("util")),
        raw=dict(d),
    )


def _float(v: Any, default: float = 0.0) -> float:
    try:
        return float(v) if v is not None else default
    except (TypeError, ValueError):
        return default


def _int(v: Any, default: int = 0) -> int:
    r = _int_or_none(v)
    return default if r is None else r


def _int_or_none(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        try:
            return int(float(v))
        except (TypeError, ValueError):
            return None


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


# --------------------------------------------------------------------------------------------
# Merging (numjobs without group_reporting, or read+write of one job)


def _percentile_from_bins(bins: Mapping[float, int], p: float) -> float:
    # fio's rule (stat.c): the first bucket at which the cumulative count reaches p% of all
    # samples; the bucket's key is the value fio prints.  Reproduces fio's own percentiles.
    n = sum(bins.values())
    if n == 0:
        raise ValueError("no latency samples: the histogram is empty")
    cum = 0
    items = sorted(bins.items())
    for value, count in items:
        cum += count
        if cum * 100.0 >= p * n:
            return value
    return items[-1][0]


def merge_latency(parts: Sequence[tuple[LatencyStats, int]]) -> LatencyStats:
    """Merge latency distributions; each part comes with its weight (number of samples).

    min/max/mean/stddev are exact (pooled variance).  Percentiles cannot be merged from
    percentiles, so they are kept only when one part has all the samples, or when every part
    carries a json+ histogram (then the histograms are added and percentiles recomputed at the
    same points fio used).  Otherwise ``percentiles`` is empty and
    :meth:`LatencyStats.percentile` explains why.
    """
    live = [(s, w) for s, w in parts if w > 0]
    if not live:
        return LatencyStats(samples=0)
    if len(live) == 1:
        s, w = live[0]
        return LatencyStats(s.min, s.max, s.mean, s.stddev, s.samples, dict(s.percentiles),
                            dict(s.bins) if s.bins is not None else None)
    total = sum(w for _, w in live)
    mean = sum(s.mean * w for s, w in live) / total
    second_moment = sum((s.stddev**2 + s.mean**2) * w for s, w in live) / total
    stddev = math.sqrt(max(second_moment - mean**2, 0.0))
    samples = sum(s.samples or 0 for s, _ in live) if all(s.samples is not None for s, _ in live) else None
    percentiles: dict[float, float] = {}
    bins: dict[float, int] | None = None
    if all(s.bins for s, _ in live):
        bins = {}
        for s, _ in live:
            for value, count in (s.bins or {}).items():
                bins[value] = bins.get(value, 0) + count
        points = sorted({p for s, _ in live for p in s.percentiles})
        percentiles = {p: _percentile_from_bins(bins, p) for p in points}
    return LatencyStats(
        min=min(s.min for s, _ in live),
        max=max(s.max for s, _ in live),
        mean=mean,
        stddev=stddev,
        samples=samples,
        percentiles=percentiles,
        bins=bins,
    )


def merge_dir_stats(parts: Iterable[FioDirStats], *, concurrent: bool = True) -> FioDirStats:
    """Sum several :class:`FioDirStats`.

    ``concurrent=True`` (jobs running side by side, or directions of one job): IOPS and
    bandwidth add up, runtime is the longest.  ``concurrent=False`` (one after another):
    IOPS and bandwidth are recomputed over the summed runtime.
    """
    parts = list(parts)
    if not parts:
        return FioDirStats()
    if len(parts) == 1:
        return parts[0]  # nothing to merge; keeps fio's raw dict too
    io_bytes = sum(p.io_bytes for p in parts)
    total_ios = sum(p.total_ios for p in parts)
    if concurrent:
        runtime = max(p.runtime_ms for p in parts)
        iops = sum(p.iops for p in parts)
        bw = sum(p.bw_bytes for p in parts)
    else:
        runtime = sum(p.runtime_ms for p in parts)
        iops = total_ios * 1000.0 / runtime if runtime else 0.0
        bw = io_bytes * 1000.0 / runtime if runtime else 0.0

    def opt_sum(values: list[int | None]) -> int | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    def lat(attr: str) -> LatencyStats:
        # Weight by the sample count fio reported, else by completed I/Os (one sample each).
        return merge_latency(
            [(getattr(p, attr), getattr(p, attr).samples if getattr(p, attr).samples is not None
              else p.total_ios) for p in parts]
        )

    return FioDirStats(
        io_bytes=io_bytes,
        bw_bytes=bw,
        iops=iops,
        runtime_ms=runtime,
        total_ios=total_ios,
        short_ios=opt_sum([p.short_ios for p in parts]),
        drop_ios=opt_sum([p.drop_ios for p in parts]),
        slat_ns=lat("slat_ns"),
        clat_ns=lat("clat_ns"),
        lat_ns=lat("lat_ns"),
        raw={},
    )


# --------------------------------------------------------------------------------------------
# Running fio


def _find_fio(fio: str) -> str:
    path = shutil.which(fio)
    if path is None:
        raise FioNotFoundError(
            f"fio executable {fio!r} was not found on PATH. Install the `fio` package "
            f"(Debian/Ubuntu: apt install fio; Fedora/RHEL: dnf install fio; Arch: pacman -S fio; "
            f"macOS: brew install fio), or pass the path of a fio binary."
        )
    return path


def fio_version(fio: str = "fio") -> str | None:
    """fio's version string (e.g. ``"fio-3.33"``), or None if fio is missing or broken."""
    path = shutil.which(fio)
    if path is None:
        return None
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    out = proc.stdout.strip()
    return out.splitlines()[0] if proc.returncode == 0 and out else None


def _with_json_output(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    have_format = False
    for arg in args:
        if arg.startswith("--output-format"):
            value = arg.partition("=")[2]
            if value not in ("json", "json+"):
                raise ValueError(
                    f"run_fio parses fio's JSON, so --output-format must be json or json+, "
                    f"not {value!r}"
                )
            have_format = True
        elif arg == "--output" or arg.startswith("--output="):
            raise ValueError("run_fio reads fio's stdout; do not pass --output=FILE")
        out.append(arg)
    if not have_format:
        out.insert(0, "--output-format=json")
    return out


def run_fio(
    args: Sequence[str],
    *,
    timeout: float | None = None,
    fio: str = "fio",
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> FioResult:
    """Run ``fio ARGS --output-format=json`` and parse what it printed.

    ``args`` are fio's arguments without the executable (options and/or job files);
    ``--output-format=json`` is added unless ``args`` already choose json or json+.
    ``timeout`` (seconds) stops fio (SIGTERM, then SIGKILL for it and its job processes).

    Raises :class:`FioNotFoundError` (no fio), :class:`FioOutputError` (no JSON; the message
    quotes fio's stdout and stderr), :class:`FioJobError` (a job reported an errno; only with
    ``check``), :class:`FioError` (timeout, or non-zero exit status with ``check``).
    """
    argv = [_find_fio(fio), *_with_json_output(args)]
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            cwd=cwd,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:  # removed between which() and exec
        raise FioNotFoundError(f"could not start fio ({exc}); install the `fio` package") from exc
    except OSError as exc:
        raise FioError(f"could not start fio {argv[0]!r}: {exc}") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:  # Ctrl-C, cancellation: fio must not outlive us
        if not isinstance(exc, subprocess.TimeoutExpired):
            _stop(proc)
            raise
        stdout, stderr = _stop(proc)
        raise FioError(
            f"fio did not finish within {timeout} s and was stopped; command: {_cmd(argv)}"
            + (f"\nfio's stderr:\n{_quote(stderr)}" if stderr.strip() else "")
        ) from None
    try:
        result = parse_fio_json(stdout)
    except FioOutputError as exc:
        detail = f"fio exited with status {proc.returncode}; command: {_cmd(argv)}\n{exc}"
        if stderr.strip():
            detail += f"\nfio's stderr:\n{_quote(stderr)}"
        raise FioOutputError(detail) from None
    result.command = argv
    result.stderr = stderr
    result.returncode = proc.returncode
    if check:
        result.raise_for_errors()
        if proc.returncode != 0:
            raise FioError(
                f"fio exited with status {proc.returncode}; command: {_cmd(argv)}"
                + (f"\nfio's stderr:\n{_quote(stderr)}" if stderr.strip() else "")
            )
    return result


def _stop(proc: subprocess.Popen[str], grace: float = 5.0) -> tuple[str, str]:
    """Stop a fio that overran its timeout; returns what it printed.

    fio's job processes call setsid(), so a process-group kill does not reach them, and they
    keep our pipes open until their runtime ends.  SIGTERM makes fio stop its jobs itself;
    if it has not exited after ``grace`` s, SIGKILL it and the job processes it forked.
    """
    proc.terminate()
    try:
        return proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for pid in [*_descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.communicate()


def _descendants(root: int) -> list[int]:
    """Pids of the processes below ``root`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # Field 4 is the ppid; the command name before it is in parentheses and may hold spaces.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmd(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def _quote(text: str) -> str:
    lines = text.strip("\n").splitlines()
    shown = [
        "  | " + (line if len(line) <= _QUOTE_WIDTH else line[:_QUOTE_WIDTH] + "...")
        for line in lines[:_QUOTE_LINES]
    ]
    if len(lines) > _QUOTE_LINES:
        shown.append(f"  | ... ({len(lines) - _QUOTE_LINES} more lines)")
    return "\n".join(shown)
