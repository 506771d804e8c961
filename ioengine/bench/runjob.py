"""``ioengine-bench run JOB.fio``: run a fio job file through ioengine, report the way fio does.

The job file is read by :mod:`ioengine.bench.jobfile` (unsupported options are refused with
their line).  How the jobs run, following fio:

* jobs run concurrently in one reactor (one asyncio loop); ``stonewall`` starts a new group that
  waits for the previous one; ``numjobs=N`` makes N concurrent clones of the job;
* each clone keeps ``iodepth`` I/Os in flight (``iodepth`` coroutines, each awaiting one I/O);
* ``time_based`` + ``runtime``: the job runs for ``runtime`` (after ``ramp_time``, whose I/Os are
  not counted); otherwise it transfers ``size`` bytes (reads + writes) and stops, or stops at
  ``runtime`` if that comes first;
* the I/O region is ``[offset, offset + size)`` of the file (percentages resolved against the
  file's size); random offsets are multiples of the block size; without ``time_based`` a random job
  visits each block once (fio's random map) unless ``norandommap``; ``randrepeat=0`` seeds from the
  OS; ``rw``/``randrw`` choose each I/O's direction with ``rwmixread``; reads use ``bs``, writes the
  second ``bs`` value (``bs=4k,64k``);
* a missing or short file is laid out first with random data, as fio does;
* ``direct``: ioengine always does O_DIRECT.  ``direct=0`` written in the file is refused (a
  buffered run through ioengine does not exist); a file that does not say ``direct`` runs with
  O_DIRECT and a note on stderr, since fio's default would be buffered;
* ``ioengine=`` in the file is not used (the reactor backend is ``--reactor-backend``); ``thread``
  has no meaning here.

Reported: per job (per clone, or per group with ``group_reporting``), per direction: I/Os, bytes,
bandwidth, IOPS, runtime, completion latency (each I/O timed around its await: min/max/mean/
stddev, fio's percentile list) and CPU.  CPU is the process's user/sys time over the group,
shared among the group's clones in proportion to their I/O counts (one process runs them all).
``--output-format json`` writes fio's JSON schema for those fields, so
:func:`ioengine.bench.fio_json.parse_fio_json` reads it back.
"""
from __future__ import annotations

import array
import asyncio
import datetime
import errno as _errno
import json
import math
import os
import random
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import ioengine
from ioengine import OpenFlags

from ..options import ReactorOptions
from .jobfile import JobFileError, JobSpec, parse_job_file
from .workloads import lay_out, percentile_index

#: fio's default clat percentile list.
FIO_PERCENTILES = (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9,
                   99.95, 99.99)
#: Random offsets drawn per worker for time-based jobs (cycled): the generator is not measured.
_TABLE = 1 << 13
#: Largest random map (blocks) drawn as a permutation; beyond it offsets repeat (norandommap).
_MAX_RANDOM_MAP = 1 << 21
_READ, _WRITE = 0, 1
_DIR_NAMES = ("read", "write")


def engine_version() -> str:
    from importlib import metadata

    try:
        return "ioengine-" + metadata.version("ioengine")
    except metadata.PackageNotFoundError:
        return "ioengine-unknown"


class RunError(Exception):
    """A job file that parses but cannot run (e.g. no size and no file); exit status 2."""


@dataclass(slots=True)
class CloneRun:
    """One clone of one job: what it did."""

    job: JobSpec
    clone: int
    group: int
    path: str
    #: Completion latencies (ns) of reads and writes: 8 bytes a sample, so long runs stay small.
    lat: tuple[array.array, array.array] = field(default_factory=lambda: (array.array("q"), array.array("q")))
    start: int = 0  # the I/O region, resolved against the file's size before the run
    length: int = 0
    runtime_ns: int = 0
    error: int = 0
    error_text: str = ""
    usr_s: float = 0.0
    sys_s: float = 0.0
    direct: bool = True

    def ios(self, d: int) -> int:
        return len(self.lat[d])

    def bytes(self, d: int) -> int:
        return len(self.lat[d]) * (self.job.bs if d == _READ else self.job.bs_write)

    @property
    def total_ios(self) -> int:
        return len(self.lat[0]) + len(self.lat[1])


# ------------------------------------------------------------------------------------------
# Planning: groups, files, layout


def check_jobs(jobs: list[JobSpec], warn: TextIO | None) -> None:
    """Refuse what ioengine cannot run as written; note what it runs differently from fio."""
    undirect = []
    engines = set()
    for job in jobs:
        src = job.sources.get("direct")
        if src is not None and not job.direct:
            raise src.error(
                f"job '{job.name}': direct=0 (buffered I/O) is not supported: ioengine always does O_DIRECT; "
                f"write direct=1 (or drop the line)", "direct")
        if src is None:
            undirect.append(job.name)
        if job.ioengine is not None:
            engines.add(job.ioengine)
    if warn is not None and undirect:
        print(f"note: job(s) {', '.join(repr(n) for n in dict.fromkeys(undirect))} do not set direct=1; "
              f"fio would run them buffered, ioengine runs them with O_DIRECT", file=warn)
    if warn is not None and engines:
        print(f"note: ioengine={','.join(sorted(engines))} in the job file is not used; the reactor backend "
              f"(--reactor-backend) carries the I/O", file=warn)


def groups_of(jobs: list[JobSpec]) -> list[list[JobSpec]]:
    """Jobs split at each ``stonewall`` (a stonewalled job waits for all before it)."""
    groups: list[list[JobSpec]] = []
    for job in jobs:
        if not groups or (job.stonewall and groups[-1]):
            groups.append([])
        groups[-1].append(job)
    return groups


def plan_layout(jobs: list[JobSpec]) -> dict[str, int]:
    """path -> bytes the file must hold (0: must exist as it is). Raises RunError for a missing
    file that no job gives a size for."""
    need: dict[str, int] = {}
    for job in jobs:
        for clone in range(job.numjobs):
            path = job.file_path(clone)
            if job.size is not None:
                end = job.size + (job.offset if job.offset_percent is None else 0)
            else:
                end = 0
            need[path] = max(need.get(path, 0), end)
    for path, end in need.items():
        if end == 0 and not os.path.exists(path):
            names = [j.name for j in jobs if any(j.file_path(c) == path for c in range(j.numjobs))]
            raise RunError(f"job '{names[0]}': {path!r} does not exist and the job sets no size= "
                           f"(a percentage needs an existing file): nothing to lay out")
    return need


async def _ensure_files(need: dict[str, int], warn: TextIO | None) -> None:
    for path, end in need.items():
        try:
            have = os.path.getsize(path)
        except FileNotFoundError:
            have = -1
        if os.path.isdir(path):
            raise RunError(f"{path!r} is a directory; give the job a filename=")
        if have < end:
            if warn is not None:
                print(f"{path}: Laying out IO file (1 file / {_mib(end)})", file=warn)
            d = os.path.dirname(os.path.abspath(path))
            os.makedirs(d, exist_ok=True)
            await lay_out(path, max(have, 0), end)


# ------------------------------------------------------------------------------------------
# Running


async def _preflight(cr: CloneRun) -> None:
    """Resolve the clone's I/O region and check it against the file before anything runs, so a
    job that cannot run is refused at once rather than after the jobs before it."""
    job = cr.job
    async with await ioengine.open_file_dma(cr.path, OpenFlags.RO) as f:
        file_size = await f.size()
        ralign, walign = f.disk_read_dma_alignment, f.disk_write_dma_alignment
    start = job.resolve_offset(file_size)
    length = max(0, min(job.resolve_size(file_size), file_size - start))
    for what, bs, align, used in (("bs", job.bs, ralign, job.does_reads),
                                  ("bs (write)", job.bs_write, walign, job.does_writes)):
        if not used:
            continue
        if bs % align:
            raise _job_error(job, "bs", f"job '{job.name}': {what}={bs} is not a multiple of {align}, the O_DIRECT "
                                        f"alignment of {cr.path!r}")
        if start % align:
            raise _job_error(job, "offset", f"job '{job.name}': offset={start} is not a multiple of {align}, the "
                                            f"O_DIRECT alignment of {cr.path!r}")
        if length < bs:
            raise _job_error(job, "size", f"job '{job.name}': the I/O region of {cr.path!r} ({length} bytes from "
                                          f"offset {start}; the file has {file_size}) is smaller than {what}={bs}")
    cr.start, cr.length = start, length


def _job_error(job: JobSpec, option: str, message: str) -> Exception:
    src = job.sources.get(option)
    return src.error(message, option) if src is not None else RunError(message)


async def _run_clone(cr: CloneRun, seed: int) -> None:
    try:
        f = await ioengine.open_file_dma(cr.path, OpenFlags.RW if cr.job.does_writes else OpenFlags.RO)
    except OSError as e:
        cr.error, cr.error_text = e.errno or _errno.EIO, str(e)
        return
    cr.direct = f.direct
    bufs: list = []
    try:
        await _drive(cr, f, cr.start, cr.length, random.Random(seed), bufs)
    except OSError as e:
        cr.error, cr.error_text = e.errno or _errno.EIO, str(e)
    except ValueError as e:  # an alignment the File refused: report it like the kernel's EINVAL
        cr.error, cr.error_text = _errno.EINVAL, str(e)
    finally:
        for b in bufs:
            b.release()
        await f.close()


async def _drive(cr: CloneRun, f: Any, start: int, length: int, rng: random.Random, bufs: list) -> None:
    job = cr.job
    depth = job.iodepth
    rbs, wbs = job.bs, job.bs_write
    rlat, wlat = cr.lat
    frac = job.read_fraction
    mixed = 0.0 < frac < 1.0
    time_based = job.time_based
    # Bytes left to transfer (reads + writes); the timer zeroes it to stop every worker.
    left = 1 << 62 if time_based else length
    end = start + length

    def op_tuples() -> tuple[tuple, tuple]:
        rb = f.allocate_buffer(rbs) if frac > 0 else None
        wb = f.allocate_buffer(wbs) if frac < 1 else None
        if wb is not None:
            wb[:] = rng.randbytes(wbs)  # fio writes random data too
        bufs.extend(b for b in (rb, wb) if b is not None)
        return (f.dma_read, rb, rlat, rbs, _READ), (f.dma_write, wb, wlat, wbs, _WRITE)

    def direction(k: int) -> list[int]:
        if not mixed:
            return [_READ if frac > 0 else _WRITE]
        return [_READ if rng.random() < frac else _WRITE for _ in range(k)]

    workers = []
    if job.is_random:
        nblocks = (length // rbs, length // wbs)
        if time_based:
            per_worker = [direction(_TABLE) for _ in range(depth)]
            plans = [[(d, start + rng.randrange(nblocks[d]) * (rbs, wbs)[d]) for d in
                      (dirs if mixed else dirs * _TABLE)] for dirs in per_worker]
            cyclic = True
        else:
            # fio's random map: every block once, in random order (per direction), until size bytes.
            ios: list[tuple[int, int]] = []
            orders: list[list[int] | None] = [None, None]
            nxt = [0, 0]
            budget = length
            dirs = direction(_TABLE)
            i = 0
            cyclic = False
            while budget > 0:
                d = dirs[i % len(dirs)]
                i += 1
                if orders[d] is None:
                    n = nblocks[d]
                    if job.norandommap or n > _MAX_RANDOM_MAP:
                        orders[d] = []
                    else:
                        order_d = orders[d] = list(range(n))
                        rng.shuffle(order_d)
                order = orders[d]
                if order:
                    blk = order[nxt[d] % len(order)]
                    nxt[d] += 1
                else:
                    blk = rng.randrange(nblocks[d])
                ios.append((d, start + blk * (rbs, wbs)[d]))
                budget -= (rbs, wbs)[d]
                if len(ios) >= _MAX_RANDOM_MAP:  # huge jobs: cycle this many offsets
                    cyclic = True
                    break
            plans = [ios[w::depth] for w in range(depth)]
        for plan in plans:
            ops = tuple(op[:4] for op in op_tuples())
            entries = [(ops[d], pos) for d, pos in plan]
            if entries:
                workers.append(_random_worker(entries, cyclic))
    else:
        cur = [start, start]  # fio keeps one sequential position per direction
        dirs = direction(_TABLE)
        for w in range(depth):
            ops = op_tuples()
            table = [ops[d] for d in dirs]
            workers.append(_seq_worker(table, w, cur, start, end))

    state = _State(left)  # shared by the workers: bytes left; zeroed by the timer or an error
    ramp = job.ramp_time_s
    t_start = time.perf_counter_ns()
    t_meas = t_start

    async def timer() -> None:
        nonlocal t_meas
        if ramp > 0:
            await asyncio.sleep(ramp)
            del rlat[:], wlat[:]
            t_meas = time.perf_counter_ns()
        if job.runtime_s is not None:
            await asyncio.sleep(job.runtime_s)
            state.left = 0

    tasks = [asyncio.ensure_future(w(state)) for w in workers]
    tick = asyncio.ensure_future(timer())
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        tick.cancel()
        state.left = 0
    t_end = time.perf_counter_ns()
    if t_meas == t_start and ramp > 0:  # finished inside the ramp: nothing measured
        del rlat[:], wlat[:]
        t_meas = t_end
    cr.runtime_ns = t_end - t_meas
    for r in results:
        if isinstance(r, BaseException):
            raise r


class _State:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _random_worker(entries: list, cyclic: bool):
    async def run(state: _State) -> None:
        clock = time.perf_counter_ns
        try:
            while True:
                for (fn, buf, lat, nb), pos in entries:
                    if state.left <= 0:
                        return
                    state.left -= nb
                    t = clock()
                    await fn(pos, buf)
                    lat.append(clock() - t)
                if not cyclic:
                    return
        except BaseException:
            state.left = 0  # fio stops a job at its first error
            raise
    return run


def _seq_worker(table: list, first: int, cur: list[int], start: int, end: int):
    mask = len(table) - 1
    assert len(table) & mask == 0, "the direction table's length must be a power of two"

    async def run(state: _State) -> None:
        clock = time.perf_counter_ns
        n = first
        try:
            while state.left > 0:
                fn, buf, lat, nb, d = table[n & mask]
                n += 1
                pos = cur[d]
                nxt = pos + nb
                cur[d] = nxt if nxt + nb <= end else start
                state.left -= nb
                t = clock()
                await fn(pos, buf)
                lat.append(clock() - t)
        except BaseException:
            state.left = 0
            raise
    return run


async def _run_group(clones: list[CloneRun], base_seed: int) -> None:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    ramp = max(c.job.ramp_time_s for c in clones)
    snap: list[Any] = [r0]

    async def after_ramp() -> None:
        await asyncio.sleep(ramp)
        snap[0] = resource.getrusage(resource.RUSAGE_SELF)

    ramp_task = asyncio.ensure_future(after_ramp()) if ramp > 0 else None
    try:
        results = await asyncio.gather(*(_run_clone(c, _seed(c, base_seed)) for c in clones),
                                       return_exceptions=True)
    finally:
        if ramp_task is not None:
            ramp_task.cancel()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - snap[0].ru_utime, r1.ru_stime - snap[0].ru_stime
    total = sum(c.total_ios for c in clones)
    for c in clones:
        share = c.total_ios / total if total else 1.0 / len(clones)
        c.usr_s, c.sys_s = user * share, system * share


def _seed(c: CloneRun, base: int) -> int:
    if not c.job.randrepeat:
        return int.from_bytes(os.urandom(8), "little")
    return hash((base, c.job.name, c.clone, c.group)) & 0xFFFFFFFF


@dataclass(slots=True)
class JobsRun:
    groups: list[list[CloneRun]]  # one list of clones per stonewall group
    backend: str  # the reactor backend that carried the I/O
    options: ReactorOptions
    started: float  # time.time() at the start


def run_jobs(jobs: list[JobSpec], options: ReactorOptions | None = None, *,
             warn: TextIO | None = None) -> JobsRun:
    """Run parsed jobs through ioengine.

    Raises :class:`JobFileError` / :class:`RunError` for what cannot run (before any job starts);
    I/O errors are recorded per clone (``error``, ``error_text``), as fio does.  Notes (layout,
    options run differently from fio) go to ``warn`` (None: nowhere).
    """
    started = time.time()
    check_jobs(jobs, warn)
    groups = groups_of(jobs)
    need = plan_layout(jobs)
    runs = [[CloneRun(job, c, g, job.file_path(c)) for job in group for c in range(job.numjobs)]
            for g, group in enumerate(groups)]
    opts = options or ReactorOptions()

    async def main() -> str:
        await _ensure_files(need, warn)
        for g in runs:
            for c in g:
                await _preflight(c)
        for g in runs:
            await _run_group(g, 0x10E)
        return ioengine.get_reactor().backend.name

    backend = ioengine.run(main(), **opts.as_dict())
    return JobsRun(runs, backend, opts, started)


# ------------------------------------------------------------------------------------------
# Reporting: entries (one per clone, or per group with group_reporting), text and JSON


@dataclass(slots=True)
class DirReport:
    ios: int
    io_bytes: int
    runtime_ms: int
    lat_sorted: list[int]

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
        mean = sum(s) / n
        var = sum((x - mean) ** 2 for x in s) / (n - 1) if n > 1 else 0.0
        return s[0], s[-1], mean, math.sqrt(var)

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
        lat = sorted(x for c in self.clones for x in c.lat[d])
        runtime = max((_ms(c.runtime_ns, c.total_ios) for c in self.clones), default=0)
        rep = DirReport(len(lat), sum(c.bytes(d) for c in self.clones), runtime if lat else 0, lat)
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
    ``group_reporting`` jobs in one group are merged (named after the first).

    Not copied: fio 3.33 also folds a ``group_reporting`` job into the entry of a job *without*
    it just before it in the same group, and then prints an empty entry at the end."""
    out: list[Entry] = []
    for group in runs:
        merged: Entry | None = None
        for c in group:
            if c.job.group_reporting:
                if merged is None:
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


def _dir_json(d: DirReport) -> dict[str, Any]:
    return {
        "io_bytes": d.io_bytes, "io_kbytes": d.io_bytes // 1024, "bw_bytes": round(d.bw_bytes),
        "bw": round(d.bw_bytes / 1024), "iops": d.iops, "runtime": d.runtime_ms, "total_ios": d.ios,
        "short_ios": 0, "drop_ios": 0,
        "slat_ns": {"min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "N": 0},
        "clat_ns": _lat_json(d, True),
        # ioengine times an I/O from the call to the task's resumption: no separate submission
        # latency, so lat equals clat.
        "lat_ns": _lat_json(d, False),
    }


_EMPTY_DIR = DirReport(0, 0, 0, [])


def _job_options(job: JobSpec) -> dict[str, str]:
    opts: dict[str, str] = {}
    for name, src in job.sources.items():
        text = re.split(r"[;#]", src.text, maxsplit=1)[0]
        key, eq, value = text.partition("=")
        opts[name] = value.strip() if eq else ""
    return opts


def to_json(run: JobsRun) -> dict[str, Any]:
    """fio's JSON document (``--output-format=json``) for the fields ioengine measures."""
    now = time.time()
    jobs = []
    for e in entries_of(run.groups):
        jobs.append({
            "jobname": e.name, "groupid": e.groupid, "error": e.error, "eta": 0,
            "elapsed": max(1, round(now - run.started)), "job options": _job_options(e.job),
            "read": _dir_json(e.direction(_READ)), "write": _dir_json(e.direction(_WRITE)),
            "trim": _dir_json(_EMPTY_DIR),
            "job_runtime": e.runtime_ms, "usr_cpu": e.usr_cpu, "sys_cpu": e.sys_cpu,
            "ctx": 0, "majf": 0, "minf": 0,
        })
    return {
        "fio version": engine_version(),
        "timestamp": int(now), "timestamp_ms": int(now * 1000), "time": time.ctime(now),
        "ioengine": {"backend": run.backend, "reactor_options": run.options.as_dict()},
        "jobs": jobs,
        "disk_util": [],
    }


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


def _mib(n: int) -> str:
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
            lines.append(f"{j.name}: (g={c.group}): rw={j.rw}, bs=(R) {j.bs}B-{j.bs}B, (W) {j.bs_write}B-"
                         f"{j.bs_write}B, (T) {j.bs_write}B-{j.bs_write}B, ioengine=ioengine/{backend}, "
                         f"iodepth={j.iodepth}")
    nclones = sum(len(g) for g in runs)
    lines.append(engine_version())
    lines.append(f"Starting {nclones} job{'s' if nclones != 1 else ''} in one reactor ({backend})")
    lines.append("")
    entries = entries_of(runs)
    date = datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    for g in range(len(runs)):
        mine = [e for e in entries if e.groupid == g]
        for e in mine:
            lines.append(f"{e.name}: (groupid={e.groupid}, jobs={len(e.clones)}): err={e.error:2d}: "
                         f"pid={os.getpid()}: {date}")
            for c in e.clones:
                if c.error:
                    lines.append(f"  error: {c.error_text}")
                if not c.direct:
                    lines.append(f"  note: {c.path!r} is on a filesystem without O_DIRECT: buffered I/O")
            for d, label in ((_READ, " read"), (_WRITE, "write")):
                rep = e.direction(d)
                if rep.ios or (d == _READ and e.job.does_reads) or (d == _WRITE and e.job.does_writes):
                    _text_direction(rep, label, lines)
            rts = e.runtime_ms
            lines.append(f"  cpu          : usr={e.usr_cpu:.2f}%, sys={e.sys_cpu:.2f}%, ctx=0, majf=0, minf=0")
            r, w = e.direction(_READ), e.direction(_WRITE)
            lines.append(f"  IO depths    : {e.job.iodepth}=100.0% (ioengine keeps iodepth I/Os in flight per clone)")
            lines.append(f"     issued rwts: total={r.ios},{w.ios},0,0 short=0,0,0,0 dropped=0,0,0,0")
            if rts == 0 and not e.error:
                lines.append("  (no I/O measured)")
            lines.append("")
        lines.append(f"Run status group {g} (all jobs):")
        for d, label in ((_READ, "   READ"), (_WRITE, "  WRITE")):
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


def main_run(job_file: str, options: ReactorOptions, output_format: str = "normal", out: TextIO | None = None,
             err: TextIO | None = None) -> int:
    """The ``run`` command: 0 when every job ran without error, 1 when a job failed (like fio),
    2 when the job file cannot be run (the message names the file and line).
    ``out``/``err`` default to the current sys.stdout / sys.stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        jobs = parse_job_file(job_file)
        if not jobs:
            raise RunError(f"{job_file}: no jobs (only [global] sections?)")
        run = run_jobs(jobs, options, warn=err)
    except (JobFileError, RunError) as e:
        print(f"ioengine-bench run: {e}", file=err)
        return 2
    if output_format == "json":
        json.dump(to_json(run), out, indent=2)
        out.write("\n")
    else:
        out.write(to_text(run))
        out.write("\n")
    failed = [c for g in run.groups for c in g if c.error]
    for c in failed:
        print(f"ioengine-bench run: job '{c.job.name}' (clone {c.clone}) failed: {c.error_text}", file=err)
    return 1 if failed else 0
