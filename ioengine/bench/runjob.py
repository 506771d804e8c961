"""``ioengine-bench run JOB.fio``: run a fio job file through ioengine, report the way fio does.

The job file is read by :mod:`ioengine.bench.jobfile` (every unsupported option is refused with
its line, all at once).  How the jobs run, following fio:

* jobs run concurrently in one reactor (one asyncio loop); ``stonewall`` starts a new group that
  waits for the previous one; ``numjobs=N`` makes N concurrent clones of the job;
* the engine decides the depth: fio's synchronous engines (``sync``, ``psync`` — fio's default —
  ``vsync``, ``pvsync``, ``pvsync2``) keep one I/O in flight per clone whatever ``iodepth`` says;
  ``libaio``, ``io_uring`` and ``posixaio`` keep ``iodepth`` (that many coroutines, each awaiting
  one I/O).  The reactor backend (``--reactor-backend``) carries them all;
* ``time_based`` + ``runtime``: the job runs for ``runtime`` (after ``ramp_time``, whose I/Os are
  not counted); otherwise it transfers ``io_size`` (default ``size``) bytes, ``loops`` times, or
  ``number_ios`` I/Os, and stops, or stops at ``runtime`` if that comes first;
* a missing or short file is laid out first with random data, as fio does; a layout that fails
  (ENOSPC, EFBIG, ...) stops at once and fails the jobs of that file;
* an I/O error ends that clone with fio's ``err=N`` line; the other jobs go on; exit status 1;
* ``direct=1`` runs with O_DIRECT, its writes aligned to the logical block as the kernel takes them
  (fio's ``bs=512`` on a 512e disk); otherwise (fio's default, ``direct=0``, ``buffered=1``) the
  files are opened without O_DIRECT (``FileOpenOptions(buffered=True)``): any block size and
  offset, through the page cache, which ``invalidate=1`` (fio's default) drops for the job's
  region before it starts, at each loop and, time_based, at each pass over the region;
* the kernel's I/O priority per request (io_uring's sqe->ioprio, libaio's aio_reqprio): the job's
  ``prio``/``prioclass``/``priohint`` for every request, ``cmdprio_percentage`` / ``cmdprio_bssplit``
  (libaio, io_uring) choosing another for a share of them, as fio's cmdprio.c; fio runs a job in its
  own process and can set its priority, ioengine runs every job on one reactor, so each request
  carries it;
* between jobs as fio: ``flow`` (a shared counter per flow_id, each job's share of it kept at its
  share of the weights), ``wait_for``, ``exitall``/``exit_what``;
* ``latency_target``: fio's depth search (double, bisect, a final window at the depth found, which is
  what is reported); ``steadystate``: fio's rolling window, the job ends when steady;
* one rate pacer per clone and direction (all its in-flight I/Os share it); ``rate_min`` checked at
  completions after fio's 2 s settle, over at least a second (fio's check_min_rate);
* verify headers carry the write's number and writer, so a block another clone overwrote fails;
  the written blocks are read back after the writes at the job's depth (not when the runtime cut
  the writes: fio terminates the job), and a time_based job does it pass after pass (size bytes
  written, then verified) until its runtime ends, as fio's do_io.

Where each I/O goes and how big: :mod:`ioengine.bench.ioplan`; what verify writes and checks:
:mod:`ioengine.bench.verifier`; what a run did and its reports (text, JSON, logs):
:mod:`ioengine.bench.jobreport`.
"""
from __future__ import annotations

import array
import asyncio
import collections
import errno as _errno
import fcntl
import hashlib
import io
import json
import os
import pickle
import random
import resource
import shutil
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import ioengine
from ioengine import OpenFlags, fill_random

from .._native import lib as _native
from ..options import ReactorOptions, SmpOptions
from .ioplan import DIRS, READ, WRITE, IoPlan, derive_seed
from .jobfile import JobFileError, JobSpec, numa_node_ids, options_help, parse_job_file
from .jobreport import CloneRun, JobsRun, mib, to_json, to_text, write_logs
from .verifier import Verifier
from .workloads import UvloopUnavailable, lay_out, run_on_loop

_DIR_NAMES = ("read", "write", "trim")


class RunError(Exception):
    """A job file that parses but cannot run (e.g. no size and no file); exit status 2."""


# ------------------------------------------------------------------------------------------
# Planning: groups, files, layout


#: fio's engine options (libaio, io_uring) that pick a priority per request.
_CMDPRIO_OPTIONS = ("cmdprio_percentage", "cmdprio_bssplit", "cmdprio_class", "cmdprio", "cmdprio_hint")

SYNC_NOTE = ("note: job(s) {names} use a synchronous engine ({engines}): one I/O in flight per job, "
             "iodepth ignored (as fio does)")


BUFFERED_AIO_NOTE = ("note: job(s) {names} use libaio without direct=1: Linux completes a buffered request "
                     "inside io_submit, so fio has one I/O in flight per job; run the same way, iodepth ignored")


def check_jobs(jobs: list[JobSpec], warn: TextIO | None) -> None:
    """Refuse what ioengine cannot run as written; note what it runs differently from fio."""
    sync_depth: dict[str, str] = {}
    buffered_aio: list[str] = []
    for job in jobs:
        cmdprio = [o for o in _CMDPRIO_OPTIONS if o in job.sources]
        if cmdprio and job.ioengine not in ("libaio", "io_uring"):
            raise job.sources[cmdprio[0]].error(
                f"job '{job.name}': {cmdprio[0]} is an option of fio's libaio and io_uring engines, not of "
                f"ioengine={job.ioengine or 'psync'}; fio refuses it there too", cmdprio[0])
        if "cmdprio_percentage" in job.sources and job.cmdprio_bssplit is not None:
            raise job.sources["cmdprio_bssplit"].error(
                f"job '{job.name}': cmdprio_percentage and cmdprio_bssplit are mutually exclusive (as in fio)",
                "cmdprio_bssplit")
        if job.sync_engine and job.iodepth > 1:
            sync_depth[job.name] = job.ioengine or "psync, fio's default"
        elif job.buffered_libaio and job.iodepth > 1:
            buffered_aio.append(job.name)
        if job.verify == "crc32c":
            try:
                import crc32c  # noqa: F401
            except ImportError:
                s = job.sources["verify"]
                raise s.error(f"job '{job.name}': verify=crc32c needs the crc32c package (pip install crc32c); "
                              f"or use verify=md5, crc32 or sha256", "verify") from None
    online = _online_nodes()
    for job in jobs:
        for attr in ("numa_cpu_nodes", "numa_mem_policy"):
            value = getattr(job, attr)
            if value is None:
                continue
            nodes_text = value.partition(":")[2] if attr == "numa_mem_policy" else value
            nodes = numa_node_ids(nodes_text) or set(online)
            src = job.sources[attr]
            missing = sorted(nodes - set(online))
            if missing:  # fio (libnuma's numa_parse_nodestring) refuses these too
                raise src.error(f"job '{job.name}': {attr}={value}: NUMA node {missing[0]} is out of range "
                                f"(this machine has node{'s' if len(online) > 1 else ''} "
                                f"{', '.join(map(str, online))}); fio refuses it as well", attr)
            if nodes != set(online):
                raise src.error(f"job '{job.name}': {attr}={value} places one job on some NUMA nodes; ioengine "
                                f"runs every job on one reactor and cannot (this machine has nodes "
                                f"{', '.join(map(str, online))})", attr)
    numa = [j.name for j in jobs if j.numa_cpu_nodes is not None or j.numa_mem_policy is not None]
    if warn is not None and numa:
        print(f"note: job(s) {', '.join(repr(n) for n in dict.fromkeys(numa))} name every NUMA node of this "
              f"machine ({', '.join(map(str, online))}): their CPUs and memory are the ones ioengine already "
              f"uses, as with fio", file=warn)
    offload = [j.name for j in jobs if j.io_submit_mode == "offload"]
    if warn is not None and offload:
        print(f"note: job(s) {', '.join(repr(n) for n in dict.fromkeys(offload))} set io_submit_mode=offload: fio "
              f"submits from a thread pool, ioengine from its reactor; the I/Os, depth and pacing are the same",
              file=warn)
    if warn is not None and sync_depth:
        print(SYNC_NOTE.format(names=", ".join(repr(n) for n in sync_depth),
                               engines=", ".join(sorted(set(sync_depth.values())))), file=warn)
    if warn is not None and buffered_aio:
        print(BUFFERED_AIO_NOTE.format(names=", ".join(repr(n) for n in dict.fromkeys(buffered_aio))), file=warn)


def _online_nodes() -> list[int]:
    """The machine's online NUMA nodes (one node, 0, where the kernel has no NUMA)."""
    try:
        with open("/sys/devices/system/node/online") as f:
            return sorted(numa_node_ids(f.read().strip())) or [0]
    except OSError:
        return [0]


def groups_of(jobs: list[JobSpec]) -> list[list[JobSpec]]:
    """Jobs split at each ``stonewall`` (a stonewalled job waits for all before it)."""
    groups: list[list[JobSpec]] = []
    for job in jobs:
        if not groups or (job.stonewall and groups[-1]):
            groups.append([])
        groups[-1].append(job)
    return groups


def _file_bytes(job: JobSpec) -> int | None:
    """Bytes of each of the job's files its region needs (None: as big as the file is)."""
    if job.filesize is not None:
        return job.filesize
    if job.size is not None:
        return max(1, job.size // job.nrfiles)
    return None


def _clone_offset(job: JobSpec, clone: int) -> int:
    return (job.offset if job.offset_percent is None else 0) + clone * job.offset_increment


def plan_layout(jobs: list[JobSpec]) -> dict[str, int]:
    """path -> bytes the file must hold (0: must exist as it is). Raises RunError for a missing
    file that no job gives a size for."""
    need: dict[str, int] = {}
    for job in jobs:
        per_file = _file_bytes(job)
        for clone in range(job.numjobs):
            for path in job.file_paths(clone):
                if per_file is None and job.fill_device and job.does_writes:
                    end = -1  # fill_device without a size: an empty file the writes grow (fio's)
                else:
                    end = per_file + _clone_offset(job, clone) if per_file is not None else 0
                need[path] = max(need.get(path, 0), end) if end >= 0 else need.get(path, -1)
    for path, end in need.items():
        if end == 0 and not os.path.exists(path):
            names = [j.name for j in jobs if any(path in j.file_paths(c) for c in range(j.numjobs))]
            raise RunError(f"job '{names[0]}': {path!r} does not exist and the job sets no size= "
                           f"(a percentage needs an existing file): nothing to lay out")
    return need


def _is_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _device_size(path: str) -> int:
    """A block device's size (statx, hence File.size(), says 0 for one): the end of it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


async def _ensure_files(need: dict[str, int], warn: TextIO | None) -> dict[str, OSError]:
    """Lay out what is missing; returns path -> the error that stopped its layout."""
    failed: dict[str, OSError] = {}
    for path, end in need.items():
        if os.path.isdir(path):
            raise RunError(f"{path!r} is a directory; give the job a filename=")
        try:
            if _is_device(path):
                continue  # a device is never laid out (fio's rule): it is as big as it is
            have = os.path.getsize(path)
        except FileNotFoundError:
            have = -1
        except OSError as e:
            failed[path] = e
            continue
        if end < 0:
            if have < 0:  # fill_device: create it empty; the job's writes fill the file system
                try:
                    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
                except OSError as e:
                    failed[path] = e
            continue
        if have < end:
            if warn is not None:
                print(f"{path}: Laying out IO file (1 file / {mib(end)})", file=warn)
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                await lay_out(path, max(have, 0), end)
            except OSError as e:
                failed[path] = e
    return failed


# ------------------------------------------------------------------------------------------
# Running


async def _preflight(cr: CloneRun) -> None:
    """Resolve the clone's I/O regions and check them against the files before anything runs, so
    a job that cannot run is refused at once rather than after the jobs before it."""
    job = cr.job
    cr.regions = []
    cr.file_sizes = []
    for path in cr.paths:
        async with await ioengine.open_file_dma(path, OpenFlags.RO, open_options(job)) as f:
            file_size = await f.size()
            if not file_size and _is_device(path):
                file_size = _device_size(path)
            ralign, walign = f.disk_read_dma_alignment, f.disk_write_dma_alignment
        start = job.resolve_offset(file_size) + cr.clone * job.offset_increment
        if job.filesize is not None or job.size is not None:
            length = _file_bytes(job) or 0
        else:
            length = job.resolve_size(file_size)
        if job.fill_device and job.size is None and job.filesize is None:
            # fio's fill_device: the region is whatever the file system still has room for.
            st = os.statvfs(path)
            length = file_size - start + st.f_bavail * st.f_frsize
        else:
            length = max(0, min(length, file_size - start))
        cr.file_sizes.append(max(file_size, start + length))
        for d, what, align, used in ((READ, "bs", ralign, job.does_reads or job.verify is not None),
                                     (WRITE, "bs (write)", walign, job.does_writes)):
            if not used:
                continue
            lo, hi = job.block_sizes(d)
            for bs in {lo, hi, job.align(d)}:
                if bs % align:
                    raise _job_error(job, "bs", f"job '{job.name}': {what}={bs} is not a multiple of {align}, "
                                                f"the O_DIRECT alignment of {path!r} (direct=0 runs buffered)")
            if start % align:
                raise _job_error(job, "offset", f"job '{job.name}': offset={start} is not a multiple of {align}, "
                                                f"the O_DIRECT alignment of {path!r} (direct=0 runs buffered)")
            if length < lo:
                raise _job_error(job, "size", f"job '{job.name}': the I/O region of {path!r} ({length} bytes "
                                              f"from offset {start}; the file has {file_size}) is smaller than "
                                              f"{what}={lo}")
        cr.regions.append((start, length))


def open_options(job: JobSpec) -> ioengine.FileOpenOptions:
    """How a job's files are opened, as fio opens them: O_DIRECT with direct=1, writes then as small
    as the kernel takes (the logical block); otherwise through the page cache, and a write the
    filesystem cannot take without blocking made at the call where fio's engine blocks for it (the
    sync family; libaio, whose io_submit does a buffered write in place)."""
    if job.direct:
        return ioengine.FileOpenOptions(align_writes_to_logical_block=True)
    return ioengine.FileOpenOptions(buffered=True, blocking_buffered_writes=job.sync_engine or job.buffered_libaio)


def fadvise_flag(job: JobSpec) -> int | None:
    """The advice fio's td_io_open_file gives a job's files (fadvise_hint; None: none)."""
    hint = job.fadvise_hint
    if hint == "0":
        return None
    if hint == "1":
        return os.POSIX_FADV_RANDOM if job.is_random else os.POSIX_FADV_SEQUENTIAL
    return {"random": os.POSIX_FADV_RANDOM, "sequential": os.POSIX_FADV_SEQUENTIAL,
            "noreuse": os.POSIX_FADV_NOREUSE}[hint]


def _advise(fd: int, start: int, length: int, flag: int) -> None:
    """fadvise_hint at open: with the page cache, random advice turns its readahead off (a 4 KiB
    random read reads 4 KiB, not a window), sequential doubles it; fio only warns if it fails."""
    try:
        os.posix_fadvise(fd, start, length, flag)
    except OSError:
        pass


def _invalidate(fd: int, start: int, length: int, path: str) -> None:
    """fio's invalidate=1: drop the region's clean cached pages, so a buffered job starts cold."""
    try:
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
    except OSError as e:
        raise OSError(e.errno, f"posix_fadvise(DONTNEED) failed: {os.strerror(e.errno or 0)}", path) from None


def _job_error(job: JobSpec, option: str, message: str) -> Exception:
    src = job.sources.get(option)
    return src.error(message, option) if src is not None else RunError(message)


def _describe(e: BaseException) -> tuple[int, str]:
    if isinstance(e, OSError):
        return e.errno or _errno.EIO, str(e)
    return _errno.EINVAL, str(e)  # an alignment the File refused: like the kernel's EINVAL


_BLKDISCARD = 0x1277  # _IO(0x12, 119), linux/fs.h


def _blkdiscard(fd: int, pos: int, n: int) -> None:
    fcntl.ioctl(fd, _BLKDISCARD, struct.pack("QQ", pos, n))


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Pacer:
    """rate / rate_iops for one direction of one clone (shared by its workers, so the clone as a
    whole keeps the rate): when the next I/O may start."""

    __slots__ = ("bps", "iops", "poisson", "rng", "next_t")

    def __init__(self, bps: int, iops: int, poisson: bool, seed: int) -> None:
        self.bps, self.iops, self.poisson = bps, iops, poisson
        self.rng = random.Random(seed)
        self.next_t = 0.0

    def delay(self, n: int, now: float) -> float:
        gap = max(n / self.bps if self.bps else 0.0, 1.0 / self.iops if self.iops else 0.0)
        if self.poisson:
            gap = self.rng.expovariate(1.0 / gap)
        if self.next_t < now - 1.0:  # fell behind by more than a second: do not burst to catch up
            self.next_t = now
        t = self.next_t
        self.next_t += gap
        return t - now


class _Flow:
    """fio's flow group (flow.c): a shared I/O counter and the weights of the jobs running in it.
    The counter starts at 1; a job leaving takes its I/Os and weight out, as fio's flow_put."""

    __slots__ = ("counter", "total_weight", "_waiters")

    def __init__(self) -> None:
        self.counter = 1
        self.total_weight = 0
        self._waiters: list[asyncio.Future[None]] = []

    def kick(self) -> None:
        """Wake the jobs waiting in :meth:`changed` (every I/O of the group kicks: with nobody
        waiting, as at a low depth, it costs a test, not an Event)."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def changed(self) -> None:
        """Until the next :meth:`kick`."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut


class _Dedupe:
    """fio's dedupe buffers: each write is unique, or (dedupe_percentage of them) a repeat — of the
    last unique buffer (repeat) or of one of the working set's (working_set). A buffer is named by
    the seed its bytes are drawn from, so a repeat is the same bytes. ``ws_seed`` draws the
    working set (dedupe_global: the same for every job, so each job, on whichever shard, repeats
    the others' buffers, as fio's jobs do from the seeds dedupe.c spreads over them); ``seed``
    the job's own choices and unique buffers."""

    def __init__(self, job: JobSpec, seed: int, working_set: int, ws_seed: int | None = None) -> None:
        self.pct = job.dedupe_percentage
        self.mode = job.dedupe_mode
        self.rng = random.Random(seed)
        self.prev: int | None = None
        ws_rng = self.rng if ws_seed is None else random.Random(ws_seed)
        self.ws = [ws_rng.getrandbits(64) for _ in range(working_set)] if self.mode == "working_set" else []

    def next_seed(self) -> int:
        # random() rather than randint/randrange: the same odds at a fifth of the Python per write
        if self.rng.random() * 100 < self.pct:
            if self.ws:
                return self.ws[int(self.rng.random() * len(self.ws))]
            if self.prev is not None:
                return self.prev
        self.prev = self.rng.getrandbits(64)
        return self.prev


def _global_dedupe_seed(job: JobSpec) -> int:
    """dedupe_global's working set: from randseed alone, so every job and shard draws the same."""
    return int.from_bytes(hashlib.blake2b(f"{job.randseed}:dedupe-global".encode(), digest_size=8).digest(), "little")


class _LatencyTarget:
    """fio's latency_target search (io_u.c lat_target_*): start at depth 1; after each
    latency_window, double the depth (or bisect towards the last failing one) while
    latency_percentile of the window's I/Os met latency_target, bisect down when they did not; when
    the depth stops changing, the stats are reset and one more window runs at it, then the job
    ends (latency_run=1: it keeps adjusting instead)."""

    def __init__(self, job: JobSpec, now: int) -> None:
        self.target = round(job.latency_target_s * 1e9)
        self.window = round(job.latency_window_s * 1e9)
        self.pct = job.latency_percentile
        self.run = job.latency_run
        self.iodepth = job.depth
        self.qd, self.low, self.high = 1, 1, self.iodepth
        self.stable = 0
        self.end_run = False
        self.done = False
        self.reset = False  # the caller resets the stats (the final window is what is reported)
        self.quiesce = False  # no new I/O until the in-flight ones are done
        self.ts, self.ios, self.failed = now, 0, 0

    def new_cycle(self, now: int, ios: int) -> None:
        self.ts, self.ios, self.failed = now, ios, 0

    def _failed(self, now: int, ios: int) -> bool:
        if self.qd == 1:
            return True
        self.high = self.qd
        if self.qd == self.low:
            self.low -= 1
        self.qd = (self.qd + self.low) // 2
        self.stable = 0
        self.quiesce = True
        self.new_cycle(now, ios)
        return False

    def _success(self, now: int, ios: int) -> None:
        qd = self.qd
        self.low = self.qd
        if self.qd + 1 == self.high:
            self.stable += 1
            if self.stable >= 3:
                self.high += 1
                self.stable = 0
        if self.high != self.iodepth:
            self.qd = (self.qd + self.high) // 2
        else:
            self.qd *= 2
        self.qd = min(self.qd, self.iodepth)
        if not self.run and self.qd == qd:
            if self.end_run:
                self.done = True
            else:
                self.quiesce = True
                self.end_run = True
                self.reset = True
        self.new_cycle(now, ios)

    def completed(self, lat_ns: int, now: int, ios: int) -> bool:
        """One I/O done (``ios`` so far); True: at depth 1 an I/O missed a 100 % target (fio's
        lat_fatal, ETIMEDOUT)."""
        if lat_ns > self.target:
            if self.pct == 100.0:
                if self._failed(now, ios):
                    return True
            else:
                self.failed += 1
        if now - self.ts >= self.window:
            n = ios - self.ios
            ok = (n - self.failed) * 100.0 / n if n else 100.0
            if ok >= self.pct:
                self._success(now, ios)
            else:
                self._failed(now, ios)
        return False


@dataclass(slots=True)
class _Shared:
    """What the clones of one run share: flow groups, who is done (wait_for)."""

    flows: dict[int, _Flow] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)  # job name -> clones not yet done
    done: dict[str, asyncio.Event] = field(default_factory=dict)
    exit_all: bool = False  # exitall with exit_what=all fired: later groups do not run

    def finished(self, name: str) -> None:
        self.left[name] = self.left.get(name, 1) - 1
        if self.left[name] <= 0:
            self.done.setdefault(name, asyncio.Event()).set()


class _Priorities:
    """The kernel priority of each request of one clone, as fio's cmdprio.c picks it: the job's
    default (prio/prioclass/priohint), or for cmdprio_percentage / cmdprio_bssplit's share of
    the requests (per direction, per block size) the cmdprio one."""

    __slots__ = ("default", "tables", "rng")

    def __init__(self, job: JobSpec, number: int) -> None:
        self.default = job.ioprio
        self.tables: tuple[list[tuple[int, int, int]], ...] = (
            job.cmdprio_table(READ), job.cmdprio_table(WRITE), [])
        self.rng = random.Random(derive_seed(job, number, "prio"))

    def of(self, d: int, n: int) -> int:
        table = self.tables[d]
        if table:
            draw = self.rng.randrange(100)
            for bs, cum, prio in table:
                if (bs == 0 or bs == n) and draw < cum:
                    return prio
        return self.default


class _Clone:
    """Runs one clone: its files, buffers and plan are made by :meth:`prepare` (before any
    clock starts), :meth:`run` does the I/O."""

    def __init__(self, cr: CloneRun, warn: TextIO | None, shared: _Shared | None = None) -> None:
        self.cr = cr
        self.job = job = cr.job
        self.warn = warn
        self.shared = shared or _Shared()
        self.files: list[Any] = []
        self.bufs: list[Any] = []
        self.verifier = Verifier(job) if job.verify else None
        # fio's do_io with time_based and verify: a pass of size bytes written, then verified,
        # again until the runtime ends (backend.c).
        self.passes = job.time_based and self.verifier is not None and job.does_writes and job.do_verify
        self.plan = self._new_plan()
        self._worker_bufs: dict[int, tuple[Any, Any]] = {}
        self._verify_bufs: list[Any] = []
        self.written: list[tuple[int, int, int, int]] = []  # (file, pos, n, seq) to verify
        self.last_write: dict[tuple[int, int], int] = {}  # _keys(...) -> seq of its latest write
        self.wseq = 0
        self.inflight: set[tuple[int, int]] = set()  # verify jobs: _keys(...) being written or read
        # Sizes that vary: writes of different passes overlap at different offsets (the random
        # map cuts them at its blocks), so what a write covers is kept per smallest block.
        variable = any(job.block_sizes(d)[0] != job.block_sizes(d)[1] for d in (READ, WRITE))
        self._grain = job.block_sizes(WRITE)[0] if self.verifier is not None and variable else 0
        self.stop = False
        self.done = False  # stopped as fio's td->done (the job is over), not terminated
        self._sleepers: set[asyncio.Future[None]] = set()  # pauses a halt() ends
        self.writes = 0
        self._refills = job.refills
        # fio's get_io_u: a write's buffer is scrambled unless it is refilled, compressible,
        # verified, or zeros (and here: a buffer_pattern, which scrambling would break)
        self._scramble = (job.scramble_buffers and not job.zero_buffers and job.buffer_pattern is None
                          and not job.buffer_compress_percentage and self.verifier is None)
        self.t0 = 0
        self.t_meas = 0  # when the measured part began (after ramp_time, or a latency_target reset)
        self.buf_rng = random.Random(derive_seed(job, cr.number, "buffers"))
        self.prio = _Priorities(job, cr.number) if job.ioprio or job.uses_cmdprio else None
        self.pacers: list[_Pacer | None] | None = None
        if any(job.rate) or any(job.rate_iops):
            self.pacers = [_Pacer(job.rate[d], job.rate_iops[d], job.rate_process == "poisson",
                                  derive_seed(job, cr.number, f"rate:{d}")) if job.rate[d] or job.rate_iops[d]
                           else None for d in (READ, WRITE)] + [None]  # trims are not paced
        # rate_min: fio's check_min_rate state per direction (bytes, ios, time of the last check)
        self._rate_last: list[list[int]] = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
        self.n_inflight = 0
        self._changed = asyncio.Event()  # set at completions while a flow quiesce waits for them
        self._quiescing = False
        self._admitted = 0  # latency_target: I/Os past the depth gate and not yet completed
        self._plan_done = False
        self._gate_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.lat_target: _LatencyTarget | None = None
        self.ios_done = 0
        self.flow: _Flow | None = None
        self.flow_count = 0
        self._flow_lock = asyncio.Lock()
        self.dedupe: _Dedupe | None = None
        if job.dedupe_percentage:
            ws = 0
            if job.dedupe_mode == "working_set":
                ws = max(1, (job.size or 0) * job.dedupe_working_set_percentage // 100 // job.block_sizes(1)[0])
            self.dedupe = _Dedupe(job, derive_seed(job, cr.number, "dedupe"), ws,
                                  _global_dedupe_seed(job) if job.dedupe_global else None)

    def _new_plan(self) -> IoPlan:
        job, cr = self.job, self.cr
        if not self.passes:
            return IoPlan(job, cr.regions, cr.number, time_based=job.time_based, file_sizes=cr.file_sizes or None)
        # do_io's total_bytes: size, or io_size if more for random writes without the map.
        size = sum(length for _, length in cr.regions)
        if job.is_random and job.norandommap and job.io_size is not None:
            size = max(size, job.io_size)
        # fio reseeds at each pass (clear_io_state): a new plan from the same seeds.
        return IoPlan(job, cr.regions, cr.number, time_based=False, file_sizes=cr.file_sizes or None,
                      pass_bytes=size)

    def halt(self) -> None:
        """Stop issuing I/O (runtime, an error, steady state, exitall ...); sleeps end at once."""
        self.stop = True
        for fut in list(self._sleepers):
            _wake(fut)
        while self._gate_waiters:
            fut = self._gate_waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """A pause that a halt() ends early (a paced job stops at its runtime, not after its gap).
        A timer on a future, not wait_for on the stop event: thinktime pauses once per I/O, and
        wait_for's task added ~0.6 ms to each (exitwhat.fio's 1000 x 2 ms took 2.7 s, fio 2.0 s)."""
        if seconds <= 0 or self.stop:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, fut)
        self._sleepers.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._sleepers.discard(fut)

    def _kick(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def prepare(self) -> bool:
        job, cr = self.job, self.cr
        flags = OpenFlags.RW if job.does_writes or job.does_trims else OpenFlags.RO
        advice = fadvise_flag(job)
        try:
            options = open_options(job)
            for i, path in enumerate(cr.paths):
                f = await ioengine.open_file_dma(path, flags, options)
                self.files.append(f)
                cr.direct = cr.direct and f.direct
                if not job.direct and job.invalidate and i < len(cr.regions):
                    start, length = cr.regions[i]
                    await ioengine.get_reactor().run_blocking(_invalidate, f.fileno(), start, length, path, owner=f)
                if advice is not None and i < len(cr.regions):
                    start, length = cr.regions[i]
                    _advise(f.fileno(), start, length, advice)
        except OSError as e:
            cr.fail(*_describe(e))
            return False
        self.plan.prepare()
        variable = any(job.block_sizes(d)[0] != job.block_sizes(d)[1] for d in (0, 1))
        logs = job.write_lat_log is not None or job.write_bw_log is not None or job.write_iops_log is not None
        if variable or logs:
            cr.sizes = tuple(array.array("q") for _ in DIRS)
        if logs:
            cr.offs = tuple(array.array("q") for _ in DIRS)
            if self.prio is not None:
                cr.prios = tuple(array.array("q") for _ in DIRS)
        return True

    def _buffers(self, w: int) -> tuple[Any, Any]:
        got = self._worker_bufs.get(w)  # a worker of a later pass takes the same ones
        if got is not None:
            return got
        job, f = self.job, self.files[0]
        rb = f.allocate_buffer(max(job.block_sizes(READ)[1], job.block_sizes(WRITE)[1]))
        wb = f.allocate_buffer(job.block_sizes(WRITE)[1]) if job.does_writes else None
        self.bufs.extend(b for b in (rb, wb) if b is not None)
        if wb is not None:
            self._fill(wb, len(wb))
        self._worker_bufs[w] = (rb, wb)
        return rb, wb

    def _fill(self, buf: Any, n: int, seed: int | None = None) -> None:
        job = self.job
        if job.zero_buffers:
            memoryview(buf)[:n] = bytes(n)
        elif job.buffer_pattern is not None:
            p = job.buffer_pattern
            memoryview(buf)[:n] = (p * (-(-n // len(p))))[:n]
        else:  # fio writes random data by default
            pct = job.buffer_compress_percentage or 0
            chunk = job.buffer_compress_chunk if pct else 0
            fill_random(buf if n == len(buf) else buf[:n], self.buf_rng.getrandbits(64) if seed is None else seed,
                        chunk=chunk, zeros=chunk * pct // 100)

    def _prepare_write(self, buf: Any, pos: int, n: int, vseq: int = 0) -> None:
        if self.dedupe is not None:
            # fio turns refill_buffers on with dedupe: each write's bytes come from its seed, so a
            # repeated seed is a repeated (dedupable) buffer; no stamp that would make it unique.
            self._fill(buf, n, self.dedupe.next_seed())
        elif self._refills:
            self._fill(buf, n)
        elif self._scramble:  # fio's small_content_scramble: no two writes alike (no dedupe shortcut)
            _native.ie_scramble(buf.address, n, pos, time.time_ns())
        if self.verifier is not None:
            self.verifier.fill(buf, pos, n, vseq, self.cr.number)

    async def run(self) -> None:
        cr, job = self.cr, self.job
        try:
            if job.wait_for is not None:
                await self.shared.done.setdefault(job.wait_for, asyncio.Event()).wait()
            if job.startdelay_s:
                await self._sleep(job.startdelay_s)
            if job.flow:
                self.flow = self.shared.flows.setdefault(job.flow_id, _Flow())
                self.flow.total_weight += job.flow
            if not self.stop:
                await self._timed()
        finally:
            if self.flow is not None:  # fio's flow_put: this job's share leaves the group
                self.flow.counter -= self.flow_count
                self.flow.total_weight -= job.flow
                self.flow.kick()
            for b in self.bufs:
                b.release()
            for f in self.files:
                try:
                    if job.fsync_on_close and job.does_writes and not cr.error:
                        await f.flush()
                    await f.close()
                except OSError as e:
                    cr.fail(*_describe(e))
            if job.unlink:
                for p in cr.paths:
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        cr.fail(*_describe(e))

    async def _timed(self) -> None:
        cr, job = self.cr, self.job
        ramp = job.ramp_time_s
        self.t0 = t_start = self.t_meas = time.perf_counter_ns()
        if job.latency_target_s:
            self.lat_target = _LatencyTarget(job, t_start)
        tasks = [asyncio.ensure_future(self._slot(w)) for w in range(job.depth)]

        async def timer() -> None:
            if ramp > 0:
                await asyncio.sleep(ramp)
                cr.reset_stats()
                self.t_meas = self.t0 = time.perf_counter_ns()
            if job.runtime_s is not None:
                await asyncio.sleep(job.runtime_s)
                self.halt()

        side = [asyncio.ensure_future(timer())]
        # fio's update_runtime: each direction's runtime is the phases that did it (a verify
        # job's reads over its verify phases), so its IOPS are the phases' rates
        phases: list[int] | None = None
        t_phase = t_start
        done_before = [0, 0, 0]

        def phase_end(dirs: tuple[int, ...]) -> None:
            nonlocal t_phase, phases
            now = time.perf_counter_ns()
            if phases is None:
                phases = [0, 0, 0]
            for d in dirs:
                phases[d] += now - max(t_phase, self.t_meas)
            t_phase = now
            done_before[:] = cr.io_bytes

        def io_dirs() -> tuple[int, ...]:  # the directions the write phase did
            return tuple(d for d in DIRS if cr.io_bytes[d] > done_before[d])

        try:
            await self._gather(tasks)
            if self.passes:
                # fio's do_io/do_verify (backend.c): a pass that the runtime cut is not verified,
                # and the runtime ends a verify too.
                phase_end(io_dirs())
                while not cr.error and not self.stop:
                    await self._drop_all()  # fio reopens the files for the verify and each pass
                    await self._verify_written(None)
                    phase_end((READ,))
                    if cr.error or self.stop:
                        break
                    self.plan = self._new_plan()
                    self.plan.prepare()
                    self._plan_done = False
                    await self._drop_all()
                    await self._gather([asyncio.ensure_future(self._slot(w)) for w in range(job.depth)])
                    phase_end(io_dirs())
            elif not cr.error and self.verifier is not None and job.does_writes and job.do_verify and \
                    (not self.stop or self.done):
                # fio's thread_main: a job terminated in do_io (its runtime, fill_device's ENOSPC,
                # steady state, exitall) breaks out before do_verify; one done (latency_target's
                # search over) verifies.
                phase_end(io_dirs())
                self.stop = False
                await self._drop_all()
                await self._verify_written(None)
                phase_end((READ,))
            if job.end_fsync and job.does_writes and not cr.error:
                for f in self.files:
                    await f.flush()
        except OSError as e:
            cr.fail(*_describe(e))
        finally:
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
        t_end = time.perf_counter_ns()
        if self.t_meas == t_start and ramp > 0:  # finished inside the ramp: nothing measured
            cr.reset_stats()
            self.t_meas = t_end
        cr.runtime_ns = t_end - self.t_meas
        if phases is not None:
            cr.dir_runtime_ns = phases
        if self.lat_target is not None:
            cr.latency_depth = self.lat_target.qd

    async def _gather(self, tasks: Sequence[asyncio.Future[Any]]) -> None:
        cr = self.cr
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(r, Exception):
                cr.fail(*_describe(r))
            elif isinstance(r, BaseException):
                raise r

    async def _drop_all(self) -> None:
        if not self.job.direct and self.job.invalidate:
            self.plan.drop.update(range(len(self.files)))
            await self._drop_cache()

    def _check_min_rate(self, now: int) -> None:
        """fio's check_min_rate, at each completion: after a 2 s settle, over at least a ratecycle
        (1 s) since the last check, the bytes (or I/Os) per second must reach rate_min."""
        cr, job = self.cr, self.job
        if now - self.t0 < 2_000_000_000:
            return
        for d in (READ, WRITE):
            if not cr.io_bytes[d] or not (job.rate_min[d] or job.rate_iops_min[d]):
                continue
            last = self._rate_last[d]
            nbytes, nios = cr.io_bytes[d], len(cr.lat[d])
            if last[0] or last[1]:
                spent_ms = (now - last[2]) // 1_000_000
                if spent_ms < 1000:
                    continue
                if job.rate_min[d]:
                    got = (nbytes - last[0]) * 1000 // spent_ms
                    if got < job.rate_min[d]:
                        cr.fail(_errno.ETIMEDOUT, f"{job.name}: rate_min={job.rate_min[d]}B/s not met, got {got}B/s")
                        self.halt()
                        return
                else:
                    got = (nios - last[1]) * 1000 // spent_ms
                    if got < job.rate_iops_min[d]:
                        cr.fail(_errno.ETIMEDOUT, f"{job.name}: rate_iops_min={job.rate_iops_min[d]} not met, "
                                                  f"got {got} IOPS")
                        self.halt()
                        return
            last[:] = [nbytes, nios, now]

    async def _depth_gate(self) -> None:
        """latency_target: issue only while fewer than the depth under test are admitted (and none
        while the depth changes: fio quiesces). Waiters queue and are woken one per free slot
        (waking every in-flight slot at each completion cost more than the I/O)."""
        lt = self.lat_target
        assert lt is not None
        while not self.stop and not self._plan_done and (lt.quiesce or self._admitted >= lt.qd):
            fut = asyncio.get_running_loop().create_future()
            self._gate_waiters.append(fut)
            await fut
        self._admitted += 1

    def _gate_wake(self) -> None:
        lt = self.lat_target
        assert lt is not None
        if lt.quiesce:
            if self._admitted:
                return
            lt.quiesce = False
            lt.new_cycle(time.perf_counter_ns(), self.ios_done)
            if lt.reset:  # fio reports only the final window, at the depth found
                lt.reset = False
                self.cr.reset_stats()
                self.t_meas = self.t0 = time.perf_counter_ns()
        free = len(self._gate_waiters) if self.stop or self._plan_done else lt.qd - self._admitted
        while free > 0 and self._gate_waiters:
            fut = self._gate_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    async def _flow_gate(self) -> None:
        """fio's flow_threshold_exceeded: wait while this job's share of its flow group's I/Os is
        above its share of the weights. One worker checks at a time (fio's job is one thread:
        one quiesce-and-sleep holds the whole job, not each in-flight slot separately)."""
        async with self._flow_lock:
            await self._flow_check()

    async def _flow_check(self) -> None:
        fl, job = self.flow, self.job
        assert fl is not None
        while not self.stop:
            if fl.total_weight and self.flow_count / fl.counter > job.flow / fl.total_weight:
                if job.flow_sleep_s:
                    self._quiescing = True
                    try:
                        while self.n_inflight and not self.stop:  # fio quiesces before it sleeps
                            await self._changed.wait()
                    finally:
                        self._quiescing = False
                    await self._sleep(job.flow_sleep_s)
                else:
                    await fl.changed()
                continue
            fl.counter += 1
            self.flow_count += 1
            fl.kick()
            return

    def _slot(self, w: int) -> Coroutine[Any, Any, None]:
        """Slot ``w``'s loop: :meth:`_plain_worker` when the plan's I/Os can be taken in
        batches (IoPlan.plain: one file, one size) and the job has nothing between two I/Os
        but their books (no pacing, gates, priorities, verify, per-I/O logs, syncs, think
        time, fill_device or trims), else :meth:`_worker`."""
        job, cr = self.job, self.cr
        plain = (self.plan.plain is not None and self.lat_target is None and self.flow is None
                 and self.pacers is None and self.prio is None and self.verifier is None
                 and cr.sizes is None and cr.offs is None and cr.prios is None
                 and not (any(job.rate_min) or any(job.rate_iops_min)) and not (job.fsync or job.fdatasync)
                 and not job.thinktime_s and not job.fill_device and not job.does_trims)
        return self._plain_worker(w) if plain else self._worker(w)

    async def _plain_worker(self, w: int) -> None:
        """:meth:`_worker` for the plainest jobs (see :meth:`_slot`): the same I/Os in the same
        order and the same books, the I/Os taken from the plan in batches (IoPlan.take)
        rather than one call each, and none of the general loop's per-I/O tests of what the job
        does not use: a page-cache hit costs a few microseconds, and the job loop's Python was
        most of it (`QD=1 BUFFERED=1 scripts/icount.sh` counts the engine's part alone)."""
        cr, plan = self.cr, self.plan
        n = plan.plain
        assert n is not None
        f = self.files[0]
        wholes = self._buffers(w)  # (read, write); a job that does not write has no write buffer
        # per direction: the call, the buffer, the books
        ways = tuple((io, b if b is None or len(b) == n else b.trim(0, n), cr.lat[d].append, cr.at[d].append)
                     for d, (io, b) in enumerate(zip((f.dma_read, f.dma_write), wholes)))
        prep = self.dedupe is not None or self._refills or self._scramble  # before each write
        mixed = plan.mixed  # the queue's entries: offsets, or offset << 1 | direction
        d = plan.direction if not mixed else READ
        io, b, lat, at = ways[d]
        io_bytes = cr.io_bytes
        clock = time.perf_counter_ns
        queued = plan.queued
        pop = queued.popleft
        take = plan.take
        while not self.stop:
            if not queued:
                # take() only into an empty queue (other slots may fill it during an await): a
                # cache drop must come after the last I/O of its pass and before the first of
                # the next, which take() holds back until then
                if plan.drop:
                    await self._drop_cache()
                if not queued and not take(_TAKE) and plan.drop:
                    # The next I/O begins a pass that drops the cache first; it is issued after
                    # the drop even if the runtime ends meanwhile, as _worker's is.
                    await self._drop_cache()
                if not queued:
                    take(_TAKE)
            if queued:
                pos = pop()
                if mixed:
                    d = pos & 1
                    pos >>= 1
                    io, b, lat, at = ways[d]
                cur = b
                m = n
            else:
                got = plan.next()
                if got is None:
                    return
                if plan.drop:
                    await self._drop_cache()
                d, _, pos, m = got
                io, b, lat, at = ways[d]
                cur = b if m == n else wholes[d].trim(0, m)  # a size cut at the region's end
            self.n_inflight += 1
            try:
                if d and prep:
                    self._prepare_write(cur, pos, m)
                t = clock()
                await io(pos, cur)
                t2 = clock()
            except OSError as e:
                if self._non_fatal(d, e):
                    continue
                self.halt()
                if not cr.error:
                    cr.total_err += 1
                raise
            except BaseException:
                self.halt()
                raise
            finally:
                self.n_inflight -= 1
                if self._quiescing:
                    self._kick()
            lat(t2 - t)
            at(t2 - self.t0)
            io_bytes[d] += m
            self.ios_done += 1

    async def _worker(self, w: int) -> None:
        cr, job, plan = self.cr, self.job, self.plan
        rb, wb = self._buffers(w)
        files = self.files
        bufs = (rb, wb, None)
        full = (len(rb), len(wb) if wb is not None else 0, 0)
        reactor = ioengine.get_reactor()
        lat, at, sizes, offs, prios = cr.lat, cr.at, cr.sizes, cr.offs, cr.prios
        prio_of = self.prio.of if self.prio is not None else None
        ioprio = 0
        io_bytes = cr.io_bytes
        clock = time.perf_counter_ns
        pacers = self.pacers
        verifier = self.verifier
        backlog = job.verify_backlog
        sync_every = job.fsync or job.fdatasync
        think, think_every = job.thinktime_s, job.thinktime_blocks
        rate_min = any(job.rate_min) or any(job.rate_iops_min)
        fill = job.fill_device
        done = 0
        while not self.stop:
            if self.lat_target is not None:
                await self._depth_gate()
                if self.stop:
                    return
            if self.flow is not None:
                await self._flow_gate()
                if self.stop:
                    return
            io = plan.next()
            if io is None:
                if self._gate_waiters:  # the plan is done: slots waiting at the depth gate end too
                    self._plan_done = True
                    self._gate_wake()
                return
            if plan.drop:
                await self._drop_cache()
            d, fi, pos, n = io
            pacer = pacers[d] if pacers is not None else None
            if pacer is not None:
                wait = pacer.delay(n, time.perf_counter())
                if wait > 0:
                    await self._sleep(wait)
                    if self.stop:
                        return
            f = files[fi]
            buf = bufs[d]
            if buf is not None and n != full[d]:
                buf = buf.trim(0, n)
            if prio_of is not None:
                ioprio = prio_of(d, n)
            if verifier is not None:
                # A checkable block is written by one I/O at a time, in the order recorded.
                keys = self._keys(fi, pos, n)
                while not self.inflight.isdisjoint(keys):
                    await asyncio.sleep(0)
                if d == WRITE:
                    self.wseq += 1
                    if job.do_verify:
                        for k in keys:
                            self.last_write[k] = self.wseq
                        self.written.append((fi, pos, n, self.wseq))
                self.inflight.update(keys)
            self.n_inflight += 1
            try:
                if d == WRITE:
                    self._prepare_write(buf, pos, n, self.wseq)
                    t = clock()
                    await (f.dma_write(pos, buf, ioprio=ioprio) if ioprio else f.dma_write(pos, buf))
                elif d == READ:
                    t = clock()
                    await (f.dma_read(pos, buf, ioprio=ioprio) if ioprio else f.dma_read(pos, buf))
                else:
                    # fio's trim (os_trim): BLKDISCARD, which a regular file refuses with ENOTTY
                    # (err=25), as it does for fio.
                    t = clock()
                    await reactor.run_blocking(_blkdiscard, f.fileno(), pos, n, owner=f)
                t2 = clock()
            except OSError as e:
                if self._non_fatal(d, e):
                    continue  # continue_on_error: counted, the first one is the job's error
                self.halt()  # fio stops a job at its first error
                if fill and e.errno in (_errno.ENOSPC, _errno.EDQUOT):
                    if verifier is not None and d == WRITE and job.do_verify:
                        self.written.pop()  # the failed write left nothing to check
                    return  # fill_device: a full device is the end of the job, not an error
                if not cr.error:  # the fatal one (the other in-flight I/Os' failures follow from it)
                    cr.total_err += 1
                raise
            except BaseException:
                self.halt()
                raise
            finally:
                self.n_inflight -= 1
                if verifier is not None:
                    self.inflight.difference_update(keys)
                if self._quiescing:
                    self._kick()
                if self.lat_target is not None:
                    # The slot usually goes on at once, through the gate it left: no waiter is
                    # woken for its place (it would find it taken and wait again: a task's step
                    # per I/O for nothing, latency-profile.fio at depth 1 with 128 slots), only
                    # when the depth changes or the slot stops (halt, the plan's end).
                    self._admitted -= 1
                    if self.lat_target.quiesce:
                        self._gate_wake()
            lat[d].append(t2 - t)
            at[d].append(t2 - self.t0)
            io_bytes[d] += n
            self.ios_done += 1
            if sizes is not None:
                sizes[d].append(n)
            if offs is not None:
                offs[d].append(pos)
            if prios is not None:
                prios[d].append(ioprio)
            if self.lat_target is not None:
                lt = self.lat_target
                qd = lt.qd
                if lt.completed(t2 - t, t2, self.ios_done):
                    cr.fail(_errno.ETIMEDOUT, f"{job.name}: latency of {t2 - t} nsec exceeds latency_target "
                                              f"({lt.target} nsec) at depth 1")
                    self.halt()
                    return
                if lt.done:
                    self.done = True  # fio's td->done, not td->terminate
                    self.halt()
                    return
                if lt.qd != qd or lt.quiesce:
                    self._gate_wake()  # the depth changed
            if rate_min:
                self._check_min_rate(t2)
            if verifier is not None:
                if d == READ:
                    if not job.does_writes:  # a read job checks data written before; a mixed
                        self._check(buf, fi, pos, n)  # one checks its own writes afterwards
                elif job.do_verify:
                    if backlog and len(self.written) >= backlog:
                        await self._verify_written(rb)
            if d == WRITE and sync_every:
                self.writes += 1
                if self.writes % sync_every == 0:
                    await f.flush()
            done += 1
            if think and done % think_every == 0:
                await self._sleep(think)

    async def _drop_cache(self) -> None:
        """The files the plan wrapped around: their regions' cached pages dropped as prepare() does
        (fio ignores a failure here: file_invalidate_cache's result is unused in loop_cache_invalidate)."""
        todo = sorted(self.plan.drop)
        self.plan.drop.clear()
        reactor = ioengine.get_reactor()
        for fi in todo:
            f = self.files[fi]
            start, length = self.cr.regions[fi]
            try:
                await reactor.run_blocking(_invalidate, f.fileno(), start, length, self.cr.paths[fi], owner=f)
            except OSError:
                pass

    def _non_fatal(self, d: int, e: OSError) -> bool:
        """fio's td_non_fatal_error: continue_on_error names the error's type (EILSEQ: verify; a
        read: read; writes and trims: write) and the errno is in that type's ignore_error list
        (default EIO, EILSEQ). Such an error is counted (and dumped), and the job goes on."""
        job, cr = self.job, self.cr
        kind = 2 if e.errno == _errno.EILSEQ else 0 if d == READ else 1
        if ("read", "write", "verify")[kind] not in job.continue_on_error:
            return False
        allowed = job.ignore_error[kind] or (_errno.EIO, _errno.EILSEQ)
        if e.errno not in allowed:
            return False
        cr.total_err += 1
        cr.fail(*_describe(e))
        if job.error_dump and self.warn is not None:
            print(f"{job.name}: non-fatal error err={e.errno} ({os.strerror(e.errno or 0)}) on "
                  f"{_DIR_NAMES[d]}, going on (continue_on_error)", file=self.warn)
        return True

    def _check(self, buf: Any, fi: int, pos: int, n: int, seq: int | None = None) -> None:
        assert self.verifier is not None
        expect = (self.cr.number, seq) if seq is not None else None
        report = self.verifier.check(buf, self.cr.paths[fi], pos, n, expect)
        if report is None:
            return
        cr = self.cr
        cr.verify_errors.append(report)
        cr.fail(_errno.EILSEQ, f"verify failed at file {cr.paths[fi]} offset {pos}, length {n}")
        if self.job.verify_dump:
            report += "\n" + self._dump(buf, fi, pos, n)
        if self.warn is not None and len(cr.verify_errors) <= _VERIFY_REPORTS:
            print(report, file=self.warn)
            if len(cr.verify_errors) == _VERIFY_REPORTS:
                print(f"{self.job.name}: further verify failures are counted, not shown", file=self.warn)
        if self.job.verify_fatal:
            self.halt()

    def _dump(self, buf: Any, fi: int, pos: int, n: int) -> str:
        """verify_dump: the block read (and, for verify=pattern, the one expected) to files named
        as fio's, FILE.OFFSET.received / .expected, in the current directory."""
        assert self.verifier is not None
        base = f"{os.path.basename(self.cr.paths[fi])}.{pos}"
        out = []
        try:
            with open(base + ".received", "wb") as fh:
                fh.write(bytes(memoryview(buf)[:n]))
            out.append(f"       {base}.received")
            if self.verifier.kind == "pattern":
                p = self.verifier.pattern
                with open(base + ".expected", "wb") as fh:
                    fh.write((p * (-(-n // len(p))))[:n])
                out.append(f"       {base}.expected")
        except OSError as e:
            return f"    verify_dump: cannot write {base}.*: {e.strerror or e}"
        # A checksummed block's expected bytes are not kept (only their digest): received only.
        return "    verify_dump: wrote\n" + "\n".join(out)

    def _keys(self, fi: int, pos: int, n: int) -> list[tuple[int, int]]:
        """What a verify job's I/O at ``pos`` covers: its offset, or with sizes that vary each
        smallest block it touches (two I/Os that overlap share one)."""
        g = self._grain
        if not g:
            return [(fi, pos)]
        start = self.cr.regions[fi][0] if fi < len(self.cr.regions) else 0
        return [(fi, b) for b in range((pos - start) // g, (pos + n - 1 - start) // g + 1)]

    async def _verify_written(self, buf: Any) -> None:
        """Read back what was written: the verify phase, at the job's depth (fio's do_verify
        keeps iodepth in flight), or a verify_backlog batch into the worker's own read buffer."""
        todo = iter(_latest_writes(self.written))
        self.written = []
        if buf is not None:
            await self._verify_some(todo, buf)
            return
        while len(self._verify_bufs) < self.job.depth:
            b = self.files[0].allocate_buffer(max(self.job.block_sizes(WRITE)[1], 4096))
            self.bufs.append(b)
            self._verify_bufs.append(b)
        await self._gather([asyncio.ensure_future(self._verify_some(todo, b)) for b in self._verify_bufs])

    async def _verify_some(self, todo: Iterator[tuple[int, int, int, int]], buf: Any) -> None:
        """Verify reads, one at a time, of what ``todo`` (shared by the verify's slots) has left."""
        cr = self.cr
        clock = time.perf_counter_ns
        for fi, pos, n, seq in todo:
            if self.stop:  # do_verify stops at the runtime (runtime_exceeded), as do_io does
                return
            b = buf.trim(0, n) if n != len(buf) else buf
            keys = self._keys(fi, pos, n)
            while not self.inflight.isdisjoint(keys):  # a write of it still in flight (verify_backlog)
                await asyncio.sleep(0)
            if any(self.last_write.get(k) != seq for k in keys):
                continue  # rewritten since (all or part): the newer write gets checked
            self.inflight.update(keys)
            try:
                t = clock()
                await self.files[fi].dma_read(pos, b, ioprio=self.prio.default if self.prio is not None else 0)
                t2 = clock()
            finally:
                self.inflight.difference_update(keys)
            cr.lat[READ].append(t2 - t)  # fio counts verify reads as reads
            cr.at[READ].append(t2 - self.t0)
            cr.io_bytes[READ] += n
            if cr.sizes is not None:
                cr.sizes[READ].append(n)
            if cr.offs is not None:
                cr.offs[READ].append(pos)
            if cr.prios is not None:
                cr.prios[READ].append(self.prio.default if self.prio is not None else 0)
            self._check(b, fi, pos, n, seq)


#: Offsets a plain slot takes from the plan at a time (IoPlan.take): enough to make the call
#: rare, few enough that a job stopped by its runtime leaves little drawn and not issued.
_TAKE = 16

#: Verify failures printed per clone (the count is in the report).
_VERIFY_REPORTS = 10


def _latest_writes(written: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The writes whose data is still on disk: of writes that overlap, the later one (only it
    can be verified; fio keeps the same history)."""
    latest: dict[tuple[int, int], tuple[int, int]] = {}
    for fi, pos, n, order in written:
        latest[(fi, pos)] = (n, order)
    items = sorted((fi, pos, n, order) for (fi, pos), (n, order) in latest.items())
    keep = [True] * len(items)
    for i, (fi, pos, n, order) in enumerate(items):
        j = i + 1
        while j < len(items) and items[j][0] == fi and items[j][1] < pos + n:
            if items[j][3] > order:
                keep[i] = False
            else:
                keep[j] = False
            j += 1
    return [item for item, k in zip(items, keep) if k]


def _ss_units(runners: list[_Clone]) -> list[list[_Clone]]:
    """Who steady state judges together: with group_reporting, all the group's clones that
    report together (fio sums the group); else each clone on its own."""
    units: list[list[_Clone]] = []
    grouped: list[_Clone] = []
    for r in runners:
        if r.job.steadystate is None or not r.job.ss_dur_s:
            continue
        if r.job.group_reporting:
            grouped.append(r)
        else:
            units.append([r])
    if grouped:
        units.append(grouped)
    return units


async def _steady_state(unit: list[_Clone]) -> None:
    """fio's steady state (steadystate.c): after ss_ramp and one more interval, one sample per
    ss_interval (IOPS, bytes/s or mean latency over the interval, summed over the unit); once
    ss_dur of samples are in, the maximum deviation from the mean (iops, bw, lat) or the
    least-squares slope (…_slope), as a share of the mean when the limit is a percentage, is
    compared with the limit; under it, the unit's jobs end (steady state attained)."""
    job = unit[0].job
    assert job.steadystate is not None
    kind, limit, pct = job.steadystate
    interval = job.ss_interval_s or 1.0
    n = max(1, int(job.ss_dur_s / interval))
    window: list[float] = []
    iops_data: list[float] = []
    bw_data: list[float] = []
    result: dict[str, Any] = {"ss": f"{kind}{'%' if pct else ''}", "duration": round(job.ss_dur_s),
                              "attained": 0, "criterion": 0.0, "limit": limit}

    def totals() -> tuple[int, int, int]:
        ios = nbytes = lat = 0
        for r in unit:
            c = r.cr
            ios += len(c.lat[0]) + len(c.lat[1])
            nbytes += c.io_bytes[0] + c.io_bytes[1]
            lat += sum(c.lat[0]) + sum(c.lat[1]) if kind.startswith("lat") else 0
        return ios, nbytes, lat

    def publish() -> None:
        result["data"] = {"iops": list(iops_data[-n:]), "bw": list(bw_data[-n:]),
                          "iops_mean": sum(iops_data[-n:]) / max(1, len(iops_data[-n:])),
                          "bw_mean": sum(bw_data[-n:]) / max(1, len(bw_data[-n:]))}
        for r in unit:
            r.cr.steady = result

    try:
        await asyncio.sleep(job.ss_ramp_s + interval)
        prev, prev_t = totals(), time.perf_counter()
        while not all(r.stop for r in unit):
            await asyncio.sleep(interval)
            cur, now = totals(), time.perf_counter()
            dt = max(now - prev_t, 1e-9)
            d_ios, d_bytes, d_lat = (a - b for a, b in zip(cur, prev))
            if d_ios < 0 or d_bytes < 0:  # stats were reset (ramp_time): start the interval over
                prev, prev_t = cur, now
                continue
            iops, bw = d_ios / dt, d_bytes / dt
            iops_data.append(iops)
            bw_data.append(bw)
            value = iops if kind.startswith("iops") else bw if kind.startswith("bw") else (
                d_lat / d_ios if d_ios else 0.0)
            window.append(value)
            del window[:-n]
            prev, prev_t = cur, now
            if len(window) < n:
                continue
            mean = sum(window) / n
            if kind.endswith("_slope"):
                if n < 2:
                    continue
                sx, sxx = n * (n - 1) / 2, (n - 1) * n * (2 * n - 1) / 6
                sxy = sum(i * y for i, y in enumerate(window))
                slope = (sxy - sx * sum(window) / n) / (sxx - sx * sx / n)
                crit = 100.0 * slope / mean if pct and mean else slope
                result["slope"] = slope
                crit = abs(crit)
            else:
                dev = max(abs(y - mean) for y in window)
                crit = 100.0 * dev / mean if pct and mean else dev
                result["max_deviation"] = dev
            result["criterion"] = crit
            if crit < limit:
                result["attained"] = 1
                for r in unit:
                    r.halt()
                return
    finally:
        publish()


def _pinned(j: JobSpec, waited: set[str]) -> bool:
    """Whether the job shares state with other jobs, so runs on shard 0 with them."""
    return bool(j.flow or j.wait_for is not None or j.name in waited or j.exitall
                or (j.steadystate is not None and j.group_reporting))


def _placement(clones: list[CloneRun], shards: int) -> dict[int, int]:
    """Which shard runs each clone (by number): round robin over the shards, except clones whose
    jobs share state with other jobs (flow, wait_for either way, exitall, a group's steady state),
    which stay on shard 0 with the jobs they share it with."""
    waited = {c.job.wait_for for c in clones if c.job.wait_for is not None}
    out: dict[int, int] = {}
    i = 0
    for c in clones:
        if shards <= 1 or _pinned(c.job, waited):
            out[c.number] = 0
        else:
            out[c.number] = i % shards
            i += 1
    return out


async def _rusage() -> tuple[float, float]:
    """This shard's process CPU so far (user, system): a group's CPU is the shards' deltas."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


async def _remote_clone(cr: CloneRun, out_dir: str) -> str:
    """Run one clone on this shard (its files opened here); the clone's record and its notes go
    to a file in ``out_dir`` (a result may be larger than a cross-shard message), whose path is
    returned."""
    from .. import smp as _smp

    notes = io.StringIO()
    runner = _Clone(cr, notes, _Shared())
    side = [asyncio.ensure_future(_steady_state(u)) for u in _ss_units([runner])]
    try:
        if await runner.prepare():
            await runner.run()
    except Exception as e:  # an error of this clone, as on shard 0
        cr.fail(*_describe(e))
    finally:
        for t in side:
            t.cancel()
        await asyncio.gather(*side, return_exceptions=True)
    cr.shard = _smp.this_shard_id()
    path = os.path.join(out_dir, f"clone-{cr.number}.pickle")
    with open(path, "wb") as f:
        pickle.dump((cr, notes.getvalue()), f)
    return path


async def _run_group(clones: list[CloneRun], warn: TextIO | None, shared: _Shared | None = None,
                     shards: int = 1) -> None:
    from .. import smp as _smp

    shared = shared or _Shared()
    place = _placement(clones, shards)
    runners = [_Clone(c, warn, shared) for c in clones if not c.error and place[c.number] == 0]
    remote = [c for c in clones if not c.error and place[c.number] != 0]
    for c in clones:
        if c.error:
            shared.finished(c.job.name)
    # Everything a clone needs is made before any clone's clock starts (on its own shard: there).
    ready = []
    for r in runners:
        if await r.prepare():
            ready.append(r)
        else:
            shared.finished(r.job.name)
    out_dir = tempfile.mkdtemp(prefix="ioengine-bench-run-") if remote else None
    shards_before = await _smp.invoke_on_all(_rusage) if shards > 1 else None
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    ramp = max((c.job.ramp_time_s for c in clones), default=0.0)
    snap: list[Any] = [r0]

    async def after_ramp() -> None:
        await asyncio.sleep(ramp)
        snap[0] = resource.getrusage(resource.RUSAGE_SELF)

    async def one(r: _Clone) -> None:
        try:
            await r.run()
        finally:
            shared.finished(r.job.name)
            if r.job.exitall:
                # fio's exitall: this job ending ends its group (exit_what=group), every running
                # job (stonewall), or everything, later groups included (all).
                what = r.job.exit_what
                for o in ready:
                    if what != "group" or o.cr.group == r.cr.group:
                        o.halt()
                if what == "all":
                    shared.exit_all = True

    async def elsewhere(c: CloneRun) -> None:
        assert out_dir is not None
        try:
            path = await _smp.submit_to(place[c.number], _remote_clone, c, out_dir)
            with open(path, "rb") as f:
                got, notes = pickle.load(f)
            for name in CloneRun.__dataclass_fields__:
                if name != "job":  # the job stays this process's object (reports group by it)
                    setattr(c, name, getattr(got, name))
            if notes and warn is not None:
                warn.write(notes)
        except Exception as e:
            c.fail(*_describe(e))
        finally:
            shared.finished(c.job.name)

    side = [asyncio.ensure_future(after_ramp())] if ramp > 0 else []
    side += [asyncio.ensure_future(_steady_state(u)) for u in _ss_units(ready)]
    try:
        results = await asyncio.gather(*(one(r) for r in ready), *(elsewhere(c) for c in remote),
                                       return_exceptions=True)
    finally:
        for t in side:
            t.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)
    for res in results:
        if isinstance(res, BaseException) and not isinstance(res, Exception):
            raise res
    for runner, res in zip(ready, results):
        if isinstance(res, Exception):
            runner.cr.fail(*_describe(res))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - snap[0].ru_utime, r1.ru_stime - snap[0].ru_stime
    if shards_before is not None:
        # Every shard's CPU over the group (ramp_time included on shards 1..N-1).
        after = await _smp.invoke_on_all(_rusage)
        user += sum(a[0] - b[0] for a, b in zip(after[1:], shards_before[1:]))
        system += sum(a[1] - b[1] for a, b in zip(after[1:], shards_before[1:]))
    total = sum(c.total_ios for c in clones)
    for c in clones:
        share = c.total_ios / total if total else 1.0 / len(clones)
        c.usr_s, c.sys_s = user * share, system * share


def run_jobs(jobs: list[JobSpec], options: ReactorOptions | None = None, *,
             warn: TextIO | None = None, smp: SmpOptions | None = None, loop: str = "asyncio") -> JobsRun:
    """Run parsed jobs through ioengine.

    Raises :class:`JobFileError` / :class:`RunError` for what cannot run (before any job starts);
    I/O errors are recorded per clone (``error``, ``error_text``), as fio does.  Notes (layout,
    options run differently from fio) go to ``warn`` (None: nowhere).  ``smp`` with more than one
    shard spreads the clones over the shards (fio runs a process per clone): see
    :func:`_placement` for the ones that stay on shard 0. ``loop``: the event loop every shard
    runs, "asyncio" (its default loop) or "uvloop".
    """
    shards = smp.smp if smp is not None else 1
    started = time.time()
    check_jobs(jobs, warn)
    groups = groups_of(jobs)
    need = plan_layout(jobs)
    runs: list[list[CloneRun]] = []
    number = 0
    gid = -1  # fio's groupid: a new one at each stonewall or new_group (reports; exitall's group)
    for group in groups:
        runs.append([])
        for job in group:
            if gid < 0 or job.stonewall or job.new_group:
                gid += 1
            for c in range(job.numjobs):
                number += 1
                paths = job.file_paths(c)
                runs[-1].append(CloneRun(job, c, gid, paths[0], number=number, paths=paths))
    opts = options or ReactorOptions()

    async def main() -> str:
        failed = await _ensure_files(need, warn)
        later: list[CloneRun] = []  # files an earlier group makes: checked when their group starts
        for g in runs:
            for c in g:
                bad = next((failed[p] for p in c.paths if p in failed), None)
                if bad is not None:
                    c.fail(*_describe(bad))
                elif all(os.path.exists(p) for p in c.paths):
                    await _preflight(c)
                else:
                    later.append(c)
        shared = _Shared()
        for job in jobs:
            shared.left[job.name] = shared.left.get(job.name, 0) + job.numjobs
        for g in runs:
            if shared.exit_all:  # exitall with exit_what=all: the later groups never start
                for c in g:
                    shared.finished(c.job.name)
                continue
            for c in g:
                if c in later:
                    await _preflight(c)
            await _run_group(g, warn, shared, shards)
        return ioengine.get_reactor().backend.name

    kw: dict[str, Any] = dict(opts.as_dict())
    if shards > 1:
        assert smp is not None
        kw.update(smp=shards, cpuset=smp.cpuset)
        if warn is not None:
            waited = {j.wait_for for j in jobs if j.wait_for is not None}
            pinned = [j.name for j in jobs if _pinned(j, waited)]
            if pinned:
                print(f"note: job(s) {', '.join(repr(n) for n in pinned)} share state with other jobs (flow, "
                      f"wait_for, exitall, a group's steady state): they run on shard 0",
                      file=warn)
    backend = run_on_loop(main(), loop, **kw)
    return JobsRun(runs, backend, opts, started, jobs, shards)


def concurrent_clones(jobs: list[JobSpec]) -> int:
    """The most clones that run at once: those of the largest stonewall group."""
    return max((sum(j.numjobs for j in g) for g in groups_of(jobs)), default=1)


def auto_shards(jobs: list[JobSpec], cpuset: str | None = None) -> SmpOptions | None:
    """The shards a job file runs on by default: one per clone that runs at once, at most one
    per CPU (of ``cpuset``, or of the process's affinity), as fio runs each clone in a process
    (or thread) of its own; None for one."""
    from .. import smp as _smp

    cpus = SmpOptions(cpuset=cpuset).cpus(every=True)
    n = min(concurrent_clones(jobs), len(cpus))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    while n > 1 and limit != resource.RLIM_INFINITY and _smp.shared_memory_bytes(n) > limit:
        n -= 1  # the shards' shared memory would not fit under `ulimit -f`
    return SmpOptions(smp=n, cpuset=cpuset) if n > 1 else None


def main_run(job_file: str | None, options: ReactorOptions, output_format: str = "normal",
             out: TextIO | None = None, err: TextIO | None = None, *, list_options: bool = False,
             smp: SmpOptions | None = None, auto_smp: bool = False, cpuset: str | None = None,
             loop: str = "asyncio") -> int:
    """The ``run`` command: 0 when every job ran without error, 1 when a job failed (like fio: one
    ``err=N (description)`` line per failing clone on stderr), 2 when the job file cannot be run
    (the message names every problem with its file and line).
    ``out``/``err`` default to the current sys.stdout / sys.stderr. ``auto_smp`` (``smp`` not
    given): concurrent clones are spread over up to one shard per CPU of ``cpuset`` (auto_shards)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if list_options:
        out.write(options_help() + "\n")
        return 0
    if job_file is None:
        print("ioengine-bench run: give a job file (or --list-options)", file=err)
        return 2
    try:
        jobs = parse_job_file(job_file)
        if not jobs:
            raise RunError(f"{job_file}: no jobs (only [global] sections?)")
        if smp is None and auto_smp:
            smp = auto_shards(jobs, cpuset)
            if smp is not None:
                print(f"note: up to {concurrent_clones(jobs)} clones run at once: they run on {smp.smp} shards "
                      f"(one per CPU), as fio runs a process per clone; --smp 1 runs them all on one reactor",
                      file=err)
        run = run_jobs(jobs, options, warn=err, smp=smp, loop=loop)
    except (JobFileError, RunError, UvloopUnavailable) as e:
        print(f"ioengine-bench run: {e}", file=err)
        return 2
    except OSError as e:  # the jobs' own errors are theirs (err= lines): this is the set-up's
        print(f"ioengine-bench run: {e}", file=err)
        return 1
    try:
        write_logs(run)
    except OSError as e:
        print(f"ioengine-bench run: cannot write a log: {e}", file=err)
    if output_format == "json":
        json.dump(to_json(run), out, indent=2)
        out.write("\n")
    else:
        out.write(to_text(run))
        out.write("\n")
    failed = [c for g in run.groups for c in g if c.error]
    for c in failed:
        print(f"ioengine-bench run: job '{c.job.name}' (clone {c.clone}): err={c.error} "
              f"({os.strerror(c.error)}): {c.error_text}", file=err)
    return 1 if failed else 0
