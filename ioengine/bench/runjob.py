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
* random offsets come from a full-cycle generator over the region's blocks, drawn one at a time:
  every block once per pass (fio's random map) unless ``norandommap`` or a non-uniform
  ``random_distribution``; with sizes that vary, a byte per smallest block marks what the pass
  did and an I/O is cut at a block already done (fio's mark_random_map); nothing is
  precomputed per I/O, so no job blocks the loop while another job's clock runs (what must be
  precomputed is, before any clock starts);
* ``randrepeat=1`` (fio's default): every seed derives from ``randseed``, the job's number and
  clone through a fixed hash, so every run issues the same offsets and directions;
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
* offsets as fio's io_u.c computes them, quirks included: ``rw=read:-8k`` / ``rw=write:112k`` (holes,
  backwards), ``rw=randread:N`` with ``rw_sequencer``, ``zonemode=strided``;
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

Reported: per job (per clone, or per group with ``group_reporting``), per direction: I/Os, bytes,
bandwidth, IOPS, runtime, completion latency (each I/O timed around its await), bandwidth and
IOPS samples (fio's 500 ms windows) and CPU.  CPU is the process's user/sys time over the group,
shared among the group's clones in proportion to their I/O counts (one process runs them all).
``--output-format json`` writes fio's JSON schema, so tools that read fio's JSON read ours.
"""
from __future__ import annotations

import array
import asyncio
import bisect
import collections
import datetime
import errno as _errno
import fcntl
import hashlib
import io
import itertools
import json
import math
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
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import ioengine
from ioengine import OpenFlags
from ioengine.ioprio import IoPrioClass, ioprio_class

from ..options import ReactorOptions, SmpOptions
from .jobfile import JobFileError, JobSpec, numa_node_ids, options_help, parse_job_file
from .workloads import lay_out, percentile_index

#: fio's default clat percentile list.
FIO_PERCENTILES = (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5, 99.9,
                   99.95, 99.99)
#: fio's bandwidth / IOPS sampling period (bw_avg_time, iops_avg_time), ms.
SAMPLE_MS = 500
_READ, _WRITE, _TRIM = 0, 1, 2
_DIRS = (_READ, _WRITE, _TRIM)
_DIR_NAMES = ("read", "write", "trim")


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
    path: str  # its first file
    number: int = 1  # fio's thread number (1-based, over the whole file): seeds and log names
    paths: list[str] = field(default_factory=list)
    #: Completion latencies (ns) of reads and writes: 8 bytes a sample, so long runs stay small.
    lat: tuple[array.array, ...] = field(default_factory=lambda: tuple(array.array("q") for _ in _DIRS))
    #: Completion times (ns since the clock started) — for the bw/iops samples and the logs.
    at: tuple[array.array, ...] = field(default_factory=lambda: tuple(array.array("q") for _ in _DIRS))
    #: Offsets and sizes of each I/O, kept only when a log needs them (or the sizes vary).
    offs: tuple[array.array, ...] | None = None
    sizes: tuple[array.array, ...] | None = None
    #: The ioprio of each I/O, kept only when a log needs it and the job sets priorities.
    prios: tuple[array.array, ...] | None = None
    io_bytes: list[int] = field(default_factory=lambda: [0, 0, 0])
    regions: list[tuple[int, int]] = field(default_factory=list)  # per file: (start, length)
    file_sizes: list[int] = field(default_factory=list)  # per file, at preflight
    runtime_ns: int = 0
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


# ------------------------------------------------------------------------------------------
# Seeds: fixed derivations, the same in every process (never hash() of a str, which is salted)


def derive_seed(job: JobSpec, number: int, purpose: str) -> int:
    """The seed of one random stream of clone ``number``: from randseed when randrepeat (every
    run the same), else from the OS."""
    kind = purpose.split(":", 1)[0]
    repeat = job.allrandrepeat or (job.randrepeat if kind in ("offset", "mix", "bs", "file") else False)
    if not repeat:
        return int.from_bytes(os.urandom(8), "little")
    digest = hashlib.blake2b(f"{job.randseed}:{number}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


# ------------------------------------------------------------------------------------------
# Offsets: cheap per I/O, nothing built per block


class FullCycle:
    """Every integer in [0, n) once per pass, in a scrambled order, O(1) memory and time.

    A linear congruential generator modulo the next power of two has full period (Hull–Dobell:
    c odd, a ≡ 1 mod 4); a bijective mix of its state hides the LCG's regular low bits; values
    >= n are skipped (under half of all draws).  This is fio's random map without the bitmap.
    """

    __slots__ = ("n", "_mask", "_a", "_c", "_x", "_shift", "_mul", "_left", "_rng", "_k", "on_pass")

    def __init__(self, n: int, seed: int, on_pass: Callable[[], None] | None = None) -> None:
        if n < 1:
            raise ValueError(f"FullCycle needs n >= 1, got {n}")
        self.n = n
        self.on_pass = on_pass  # called when a pass ends and the next begins (not for the first)
        self._k = k = max(2, (n - 1).bit_length())
        self._mask = (1 << k) - 1
        self._shift = max(1, k // 2)
        self._rng = random.Random(seed)
        self._new_pass()

    def _new_pass(self) -> None:
        # Each pass its own order (fio's map is cleared, its generator goes on).
        r, k = self._rng, self._k
        self._a = (r.getrandbits(k) & ~7) | 5  # a ≡ 1 (mod 4), and never 1
        self._c = r.getrandbits(k) | 1
        self._x = r.getrandbits(k)
        self._mul = r.getrandbits(k) | 1  # odd: a bijection modulo 2**k
        self._left = self.n

    def end_pass(self) -> None:
        """The pass is over before n draws (the caller's map is full): the next draw starts one."""
        self._left = 0

    def next(self) -> int:
        if self._left == 0:
            self._new_pass()
            if self.on_pass is not None:
                self.on_pass()
        self._left -= 1
        mask, n = self._mask, self.n
        x = self._x
        while True:
            x = (self._a * x + self._c) & mask
            y = x ^ (x >> self._shift)
            y = (y * self._mul) & mask
            y ^= y >> self._shift
            if y < n:
                self._x = x
                return y


def _scatter(v: int, n: int, off: int) -> int:
    # fio hashes a distribution's rank so hot blocks are spread over the region.
    return ((v * 0x9E3779B97F4A7C15 + off) & 0xFFFFFFFFFFFFFFFF) % n


class BlockPicker:
    """Next block index in [0, n) for random I/O, by the job's random_distribution.

    ``track=True`` (the random map with block sizes that vary): what each I/O covers is marked,
    as fio's axmap, so that :meth:`claim` can keep a pass from touching a block twice."""

    __slots__ = ("n", "next", "used", "free", "_cycle", "_on_pass")

    def __init__(self, job: JobSpec, n: int, seed: int, on_pass: Callable[[], None] | None = None,
                 track: bool = False) -> None:
        self.n = n
        rng = random.Random(seed)
        dist = job.random_distribution
        off = rng.getrandbits(32)
        self.next: Callable[[], int]
        self.used: bytearray | None = None  # one byte per block, 1: covered in this pass
        self.free = n
        self._cycle: FullCycle | None = None
        self._on_pass = on_pass
        if dist == "random":
            if job.norandommap:
                self.next = lambda: rng.randrange(n)
            elif track:
                self.used = bytearray(n)
                self._cycle = FullCycle(n, seed, self._new_pass)
                self.next = self._cycle.next
            else:
                self.next = FullCycle(n, seed, on_pass).next
        elif dist == "zipf":
            self.next = _zipf(n, job.random_params[0], rng, off)
        elif dist == "pareto":
            h = job.random_params[0]
            power = math.log(h) / math.log(1.0 - h)
            self.next = lambda: _scatter(int((n - 1) * rng.random() ** power), n, off)
        elif dist == "normal":
            sigma = job.random_params[0] * n / 100.0

            def normal() -> int:
                v = int(rng.gauss(n / 2.0, sigma))
                return _scatter(min(n - 1, max(0, v)), n, off)
            self.next = normal
        else:  # zoned / zoned_abs: pick the zone by its access share, then uniformly inside it
            self.next = _zoned(job, n, rng)

    def _new_pass(self) -> None:
        self.used = bytearray(self.n)
        self.free = self.n
        if self._on_pass is not None:
            self._on_pass()

    def claim(self, b: int, blocks: int) -> tuple[int, int]:
        """fio's random map for an I/O of ``blocks`` blocks drawn at block ``b``: free_block,
        then mark. Returns (block, blocks)."""
        b = self.free_block(b)
        return b, self.mark(b, blocks)

    def free_block(self, b: int) -> int:
        """A block already covered moves to the next free one (axmap_next_free, wrapping)."""
        used = self.used
        assert used is not None
        if used[b]:
            nb = used.find(0, b + 1)
            b = nb if nb >= 0 else used.find(0, 0, b)
        return b

    def mark(self, b: int, blocks: int) -> int:
        """Mark ``blocks`` blocks from the free block ``b``, cut at the first covered one
        (mark_random_map's axmap_set_nr): the blocks marked. A full map ends the pass."""
        used = self.used
        assert used is not None and self._cycle is not None
        stop = min(b + blocks, self.n)
        hit = used.find(1, b, stop)
        if hit >= 0:
            stop = hit
        blocks = stop - b
        used[b:stop] = b"\1" * blocks
        self.free -= blocks
        if not self.free:
            self._cycle.end_pass()
        return blocks


def _zipf(n: int, theta: float, rng: random.Random, off: int) -> Callable[[], int]:
    # Gray et al.'s generator, as fio's zipf.c; zeta(n) exactly for the first terms, the rest by
    # the integral (midpoint rule) so a large region costs nothing before the clock starts.
    head = min(n, 10000)
    zetan = math.fsum(i ** -theta for i in range(1, head + 1))
    if n > head:
        zetan += ((n + 0.5) ** (1 - theta) - (head + 0.5) ** (1 - theta)) / (1 - theta)
    zeta2 = 1.0 + 2.0 ** -theta
    alpha = 1.0 / (1.0 - theta)
    eta = (1.0 - (2.0 / n) ** (1.0 - theta)) / (1.0 - zeta2 / zetan) if n > 2 else 1.0
    half = 1.0 + 0.5 ** theta

    def nxt() -> int:
        u = rng.random()
        uz = u * zetan
        if uz < 1.0:
            v = 0
        elif uz < half:
            v = 1
        else:
            v = min(n - 1, int(n * (eta * u - eta + 1.0) ** alpha))
        return _scatter(v, n, off)
    return nxt


def _zoned(job: JobSpec, n: int, rng: random.Random) -> Callable[[], int]:
    zones: list[tuple[float, int, int]] = []  # (cumulative access, first block, blocks)
    cum, first = 0.0, 0
    total_bytes = n  # zoned_abs sizes are converted to blocks by the caller's block size below
    for access, rng_part in job.random_zones:
        if job.random_distribution == "zoned":
            count = max(1, int(n * rng_part / 100.0))
        else:
            count = max(1, int(rng_part) // max(1, job.align(0)))
        count = min(count, max(1, total_bytes - first))
        cum += access
        zones.append((cum, min(first, n - 1), count))
        first += count

    def nxt() -> int:
        u = rng.random() * 100.0
        for c, start, count in zones:
            if u < c:
                return min(n - 1, start + rng.randrange(count))
        c, start, count = zones[-1]
        return min(n - 1, start + rng.randrange(count))
    return nxt


class IoPlan:
    """What one clone issues next: ``next() -> (direction, file index, offset, length)`` or
    None when done.  Pure computation (no I/O, no clock): the runner asks it once per I/O."""

    def __init__(self, job: JobSpec, regions: list[tuple[int, int]], number: int, *, time_based: bool,
                 file_sizes: list[int] | None = None, pass_bytes: int | None = None) -> None:
        self.job = job
        self.regions = regions
        self.time_based = time_based
        # fio's real_file_size: where rw=...:N offsets wrap (default: the regions' ends).
        self._sizes = file_sizes if file_sizes is not None else [s + n for s, n in regions]
        self._last_start = [[-1, -1, -1] for _ in regions]  # per file and direction (rw_sequencer=identical)
        # fio's td->ddir_seq_nr: I/Os left until a new random offset; the first I/O takes one (fio 3.33
        # issues rw=randread:4 as random, 3 sequential, random, ...).
        self._seq_nr_left = 1
        self._loops_left = job.loops
        self._strided = job.zonemode == "strided" and len(regions) == 1  # fio: strided needs one file
        self._zrange = job.zonerange or job.zonesize
        self._zone_bytes = 0
        self._zone_start = [s for s, _ in regions]
        frac = job.read_fraction
        self._frac = frac
        self._mixed = 0.0 < frac < 1.0
        self._only = _READ if frac > 0 else _TRIM if job.rw in ("trim", "randtrim") else _WRITE
        # trimwrite / randtrimwrite: each block trimmed, then the same block written (fio counts
        # io_size in the writes: as much is trimmed as written).
        self._trimwrite = job.rw in ("trimwrite", "randtrimwrite")
        self._pending: tuple[int, int, int] | None = None
        if self._trimwrite:
            self._only = _TRIM
        self._mix = random.Random(derive_seed(job, number, "mix"))
        self._bsrng = random.Random(derive_seed(job, number, "bs"))
        self._filerng = random.Random(derive_seed(job, number, "file"))
        self._random = job.is_random
        total = sum(length for _, length in regions)
        if time_based:
            self.left = 1 << 62
        elif pass_bytes is not None:  # one pass of a time_based verify job (see _Clone._timed)
            self._per_pass = self.left = pass_bytes
            self._loops_left = 1
        else:
            self._per_pass = job.io_size if job.io_size is not None else total
            self.left = self._per_pass * job.loops
        self.ios_left = job.number_ios if job.number_ios is not None else 1 << 62
        self._bs = [self._bs_chooser(d) for d in _DIRS]
        # Sequential: one position per file and direction, as fio keeps last_pos per ddir.
        self._pos = [[start, start, start] for start, _ in regions]
        # Random: one picker per file and (block unit) — shared by the directions when they
        # use the same unit, like fio's one random map per file.
        self._pickers: list[dict[tuple[int, int], BlockPicker]] = [{} for _ in regions]
        self._picked: list[list[tuple[BlockPicker, int] | None]] = [[None, None, None] for _ in regions]
        self._number = number
        self._file = 0
        self._file_ios = 0
        self._nfiles = len(regions)
        # Files whose page cache the runner drops before this I/O: fio's loop_cache_invalidate
        # (io_u.c) at each pass of a time_based job, and the reopen of each loop (ioengines.c
        # td_io_open_file), both only with invalidate=1 and without O_DIRECT.
        self.drop: set[int] = set()
        self._drop_cache = job.invalidate and not job.direct
        self._loop_mark: int | None = None  # bytes left when the next loop begins
        if self._drop_cache and not time_based and pass_bytes is None and job.loops > 1:
            self._loop_mark = self._per_pass * (job.loops - 1)

    def _bs_chooser(self, d: int) -> Callable[[int], int]:
        """The size of the next I/O, given the bytes ``room`` left before the region's end: fio's
        get_next_buflen, whose draw is repeated (or, for bssplit, moves to the next entry) until
        the size fits (io_u_fits), with room for the smallest (the caller makes sure of that)."""
        job = self.job
        lo, hi = job.block_sizes(d)
        if lo == hi:
            return lambda room: lo  # fio: one size, no fit check
        r = self._bsrng
        if job.bssplit is None:
            # min + max * U, rounded down to a multiple of min, capped at max.
            def ranged(room: int) -> int:
                while True:
                    n = min(hi, (lo + int(hi * r.random())) // lo * lo)
                    if n <= room:
                        return n
            return ranged
        # fio's bssplit_ddir sorts the entries by percentage (bs_cmp; stable here), a 0% entry
        # is never drawn (but counts in min_bs / max_bs); each size is rounded down to a multiple
        # of min_bs, capped at max_bs.
        split = [e for e in sorted(job.bssplit[min(d, _WRITE)], key=lambda e: e[1]) if e[1]]
        sizes = [b for b, _ in split]
        issued = [min(hi, b // lo * lo) for b in sizes]
        cum = list(itertools.accumulate(p for _, p in split))
        total = cum[-1]
        last = len(sizes) - 1

        def split_size(room: int) -> int:
            # One draw per I/O against the cumulative percentages; a size that does not fit
            # gives way to the next entry that does, else the last entry's (drawn again if it
            # does not fit once rounded).
            for _ in range(1000):  # a split whose sizes never fit would spin fio forever
                i = bisect.bisect_right(cum, r.random() * total)
                while sizes[i] > room and i < last:
                    i += 1
                if issued[i] <= room:
                    return issued[i]
            return room // lo * lo
        return split_size

    def _picker(self, fi: int, d: int) -> tuple[BlockPicker, int]:
        got = self._picked[fi][d]  # block_sizes() builds lists: not once per I/O
        if got is not None:
            return got
        job = self.job
        unit = job.align(d)
        lo, hi = job.block_sizes(d)
        # Writes must not overlap within a pass to be checkable: blocks of the smallest size,
        # which fio's random map cuts the larger writes at (below), else whole largest blocks.
        mapped = unit == lo and (lo == hi or job.random_distribution == "random" and not job.norandommap)
        if job.verify and not mapped:
            unit = max(unit, *(job.block_sizes(x)[1] for x in (_READ, _WRITE)))
            lo = unit
        key = (unit, lo)
        p = self._pickers[fi].get(key)
        if p is None:
            _, length = self.regions[fi]
            if self._strided:  # fio draws random offsets inside the current zone
                length = min(length, self._zrange)
            n = max(1, (length - lo) // unit + 1)
            # fio's get_next_rand_block: a time_based job's random map, used up, is reset and the
            # file's cache dropped.
            on_pass = (lambda: self.drop.add(fi)) if self._drop_cache and self.time_based else None
            # Sizes that vary: fio's random map cuts an I/O at a block already done this pass
            # (mark_random_map); one size needs no map, the full cycle is it.
            track = unit == lo and any(self.job.block_sizes(x)[0] == lo != self.job.block_sizes(x)[1]
                                       for x in _DIRS)
            p = BlockPicker(self.job, n, derive_seed(self.job, self._number, f"offset:{fi}:{unit}:{lo}"),
                            on_pass, track)
            self._pickers[fi][key] = p
        got = self._picked[fi][d] = (p, unit)
        return got

    def prepare(self) -> None:
        """Build what the first draws would (zipf's zeta etc.) now, before any clock runs."""
        for fi in range(self._nfiles):
            for d in _DIRS:
                if self._random and (d == self._only or self._mixed and d != _TRIM):
                    self._picker(fi, d)

    def _next_file(self) -> int:
        if self._nfiles == 1:
            return 0
        kind = self.job.file_service_type
        self._file_ios += 1
        if self._file_ios > self.job.file_service_nr or kind == "random" and self._file_ios == 1:
            self._file_ios = 1
            if kind == "random":
                self._file = self._filerng.randrange(self._nfiles)
            elif kind == "roundrobin":
                self._file = (self._file + 1) % self._nfiles
        return self._file

    def _zone(self, fi: int, d: int) -> None:
        """zonemode=strided, as fio's setup_strided_zone_mode: after zonesize bytes, the zone start
        moves by zonerange + zoneskip (back to the region's start past the file's end)."""
        job = self.job
        if self._zone_bytes >= job.zonesize:
            self._zone_bytes = 0
            z = self._zone_start[fi] + self._zrange + job.zoneskip
            if z >= self._sizes[fi]:
                z = self.regions[fi][0]
            self._zone_start[fi] = z
            self._pos[fi][d] = z
        if self._pos[fi][d] >= self._zone_start[fi] + self._zrange:
            self._pos[fi][d] = self._zone_start[fi]

    def _seq_offset(self, fi: int, d: int, base: int, length: int) -> int | None:
        """fio's get_next_seq_offset with rw=...:N bytes (ddir_seq_add): the next offset, or None
        when it falls past the region (fio ends the pass there; a time_based job starts over)."""
        # fio's arithmetic kept as it is, quirks included: the relative offset is compared with
        # the file's absolute size, and a rewind sets the absolute position to a length.
        add = self.job.rw_add
        real = self._sizes[fi]
        last = self._pos[fi][d]
        if last >= base + length and self.time_based:
            last = base
            self._seq_wrapped(fi)
        top = length if real > length else real
        if last == base and base and add < 0:  # only rewind once the start was reached
            last = top
        pos = last - base
        if pos and add:
            pos += add
            if pos < 0 or pos >= real:  # fio's unsigned wrap: backwards to the end, forwards to the start
                pos = top + add if add < 0 else base  # (fio's quirk: the start is the absolute offset)
        if pos < 0 or pos >= length:
            return None
        return base + pos

    def _sequential(self, fi: int, d: int, base: int, length: int) -> int | None:
        if self.job.rw_add == 0:
            pos = self._pos[fi][d]
            if pos + self.job.block_sizes(d)[0] > base + length:
                pos = base
                self._seq_wrapped(fi)
                if self.job.file_service_type == "sequential" and self._nfiles > 1:
                    self._file = (self._file + 1) % self._nfiles
            return pos
        nxt = self._seq_offset(fi, d, base, length)
        if nxt is None and self.time_based:
            self._pos[fi][d] = base
            nxt = self._seq_offset(fi, d, base, length)
        return nxt

    def _seq_wrapped(self, fi: int) -> None:
        # fio's get_next_seq_offset: a time_based job with one file back at its start drops the
        # file's cache (not a zone's start: strided zones wrap in setup_strided_zone_mode).
        if self._drop_cache and self.time_based and self._nfiles == 1 and not self._strided:
            self.drop.add(fi)

    def _new_pass(self) -> bool:
        """A pass of a rw=...:N job ran out of offsets before its bytes: fio goes on with the next
        loop from the start (False: that was the last)."""
        self._loops_left -= 1
        if self._loops_left <= 0:
            self.left = 0
            return False
        self.left = self._per_pass * self._loops_left
        if self._drop_cache:  # a new loop reopens the files, which drops their cache
            self.drop.update(range(self._nfiles))
            if self._loop_mark is not None:
                self._loop_mark = self._per_pass * (self._loops_left - 1)
        for fi, (start, _) in enumerate(self.regions):
            self._pos[fi] = [start, start, start]
            self._zone_start[fi] = start
        return True

    def next(self) -> tuple[int, int, int, int] | None:
        if self._pending is not None:  # trimwrite: the write of the block just trimmed
            done = self._pending
            self._pending = None
            self.left -= done[2]
            self.ios_left -= 1
            return _WRITE, *done
        if self.left <= 0 or self.ios_left <= 0:
            return None
        if self._loop_mark is not None and self.left <= self._loop_mark:
            # loops=N: the next loop begins; fio reopens the files (td_io_open_file drops their cache)
            self.drop.update(range(self._nfiles))
            while self._loop_mark > 0 and self.left <= self._loop_mark:
                self._loop_mark -= self._per_pass
        d = (_READ if self._mix.random() < self._frac else _WRITE) if self._mixed else self._only
        fi = self._next_file()
        start, length = self.regions[fi]
        if self._strided:
            self._zone(fi, d)
            base = self._zone_start[fi]
            length = min(self._zrange, start + length - base) if base >= start else self._zrange
        else:
            base = start
        end = base + length
        # rw=randX:N: a new random offset every N I/Os only; the others follow rw_sequencer.
        fresh = True
        if self.job.rw_seq_nr > 1:
            self._seq_nr_left -= 1
            fresh = self._seq_nr_left == 0
            if fresh:
                self._seq_nr_left = self.job.rw_seq_nr
        pos: int | None
        n = 0
        if self._random and fresh:
            # fio's fill_io_u: the offset (a free block of the map), then the size that fits
            # there, then the map marked, which cuts it at a block already done.
            picker, unit = self._picker(fi, d)
            b = picker.next()
            if picker.used is not None:
                b = picker.free_block(b)
                n = self._bs[d](end - base - b * unit)
                n = min(n, picker.mark(b, -(-n // unit)) * unit)
            pos = base + b * unit
        elif self._random and self.job.rw_sequencer == "identical":
            last = self._last_start[fi][d]
            pos = last if last >= 0 else base
        else:
            pos = self._sequential(fi, d, base, length)
            if pos is None and self._random:  # fio: no sequential offset left, take a random one
                picker, unit = self._picker(fi, d)
                pos = base + picker.next() * unit
            while pos is None:
                if not self._new_pass():
                    return None
                pos = self._sequential(fi, d, self.regions[fi][0], self.regions[fi][1])
                end = self.regions[fi][0] + self.regions[fi][1]
        if not n:
            n = self._bs[d](end - pos)
        if pos + n > end:  # not even the smallest size fits: shortened (fio ends the pass there)
            lo = self.job.block_sizes(d)[0]
            n = max(lo, (end - pos) // lo * lo)
        self._pos[fi][d] = pos + n
        self._last_start[fi][d] = pos
        self._zone_bytes += n
        if self._trimwrite:
            self._pending = (fi, pos, n)
            return d, fi, pos, n
        self.left -= n
        self.ios_left -= 1
        return d, fi, pos, n


# ------------------------------------------------------------------------------------------
# Verify: a header per block (fio's idea: the block says where it belongs and what it holds)

_MAGIC = 0xACCA_10E0
# magic, length, offset, number of the write, the clone that wrote it (fio's numberio and thread:
# a block another clone overwrote fails its check, as in fio)
_HDR = struct.Struct("<IIQQI4x")
_SUM_AT = _HDR.size
_SUM_LEN = 64  # room for the largest digest (sha512)
_DATA_AT = _SUM_AT + _SUM_LEN


def _checksum(kind: str) -> Callable[[bytes | memoryview], bytes]:
    if kind in ("md5", "sha1", "sha256", "sha512"):
        return lambda b: hashlib.new(kind, b).digest()
    if kind == "crc32":
        return lambda b: zlib.crc32(b).to_bytes(4, "little")
    if kind == "crc32c":
        import crc32c  # checked by check_jobs

        return lambda b: crc32c.crc32c(b).to_bytes(4, "little")
    return lambda b: b""  # meta / null: the header alone


class Verifier:
    """Fills write buffers so they can be checked, and checks what is read back."""

    def __init__(self, job: JobSpec) -> None:
        self.kind = job.verify or "null"
        self.pattern = job.verify_pattern or b""
        self.sum = _checksum(self.kind)
        self.interval = job.verify_interval

    def _chunks(self, n: int) -> range:
        step = self.interval or n
        return range(0, n, step)

    def fill(self, buf: Any, pos: int, n: int, seq: int, writer: int = 0) -> None:
        mv = memoryview(buf)[:n]
        if self.kind == "pattern":
            reps = -(-n // len(self.pattern))
            mv[:] = (self.pattern * reps)[:n]
            return
        step = self.interval or n
        for c in self._chunks(n):
            size = min(step, n - c)
            if size < _DATA_AT:
                continue
            chunk = mv[c:c + size]
            _HDR.pack_into(chunk, 0, _MAGIC, size, pos + c, seq, writer)
            digest = self.sum(chunk[_DATA_AT:]).ljust(_SUM_LEN, b"\0")
            chunk[_SUM_AT:_DATA_AT] = digest

    def check(self, buf: Any, path: str, pos: int, n: int, expect: tuple[int, int] | None = None) -> str | None:
        """None when the block is right, else fio's style of report. ``expect``: (writer, seq) of
        the write being checked, when the checker made it (a read-only job cannot know)."""
        mv = memoryview(buf)[:n]
        where = f"at file {path} offset {pos}, length {n}"
        if self.kind == "pattern":
            reps = -(-n // len(self.pattern))
            want = (self.pattern * reps)[:n]
            if bytes(mv) != want:
                bad = next(i for i in range(n) if mv[i] != want[i])
                return (f"pattern: verify failed {where}\n    fio: got pattern '{mv[bad]:02x}', wanted "
                        f"'{want[bad]:02x}'. Bad bits {bin(mv[bad] ^ want[bad]).count('1')}\n"
                        f"    fio: bad pattern block offset {bad}")
            return None
        step = self.interval or n
        for c in self._chunks(n):
            size = min(step, n - c)
            if size < _DATA_AT:
                continue
            chunk = mv[c:c + size]
            magic, length, offset, seq, writer = _HDR.unpack_from(chunk, 0)
            if magic != _MAGIC:
                return f"verify: bad magic header {magic:x}, wanted {_MAGIC:x} {where}"
            if offset != pos + c or length != size:
                return (f"verify: bad header offset {offset}, wanted {pos + c} {where} "
                        f"(header length {length}, wanted {size})")
            if expect is not None and (writer, seq) != expect:
                return (f"verify: bad header numberio {seq} of job {writer}, wanted {expect[1]} of job "
                        f"{expect[0]} {where} (overwritten by another write)")
            want = bytes(chunk[_SUM_AT:_DATA_AT])
            got = self.sum(chunk[_DATA_AT:]).ljust(_SUM_LEN, b"\0")
            if got != want:
                width = len(self.sum(b"")) or _SUM_LEN
                return (f"{self.kind}: verify failed {where}\n       Expected CRC: {want[:width][::-1].hex()}\n"
                        f"       Received CRC: {got[:width][::-1].hex()}")
        return None


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
                print(f"{path}: Laying out IO file (1 file / {_mib(end)})", file=warn)
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
        for d, what, align, used in ((_READ, "bs", ralign, job.does_reads or job.verify is not None),
                                     (_WRITE, "bs (write)", walign, job.does_writes)):
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
    as the kernel takes (the logical block); otherwise through the page cache."""
    if job.direct:
        return ioengine.FileOpenOptions(align_writes_to_logical_block=True)
    return ioengine.FileOpenOptions(buffered=True)


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

    __slots__ = ("counter", "total_weight", "_changed")

    def __init__(self) -> None:
        self.counter = 1
        self.total_weight = 0
        self._changed = asyncio.Event()

    def kick(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def changed(self) -> None:
        await self._changed.wait()


class _Dedupe:
    """fio's dedupe buffers: each write is unique, or (dedupe_percentage of them) a repeat — of the
    last unique buffer (repeat) or of one of the working set's (working_set). A buffer is named by
    the seed its bytes are drawn from, so a repeat is the same bytes."""

    def __init__(self, job: JobSpec, seed: int, working_set: int) -> None:
        self.pct = job.dedupe_percentage
        self.mode = job.dedupe_mode
        self.rng = random.Random(seed)
        self.prev: int | None = None
        self.ws = [self.rng.getrandbits(64) for _ in range(working_set)] if self.mode == "working_set" else []

    def next_seed(self) -> int:
        if self.rng.randint(1, 100) <= self.pct:
            if self.ws:
                return self.ws[self.rng.randrange(len(self.ws))]
            if self.prev is not None:
                return self.prev
        self.prev = self.rng.getrandbits(64)
        return self.prev


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
    """What the clones of one run share: flow groups, who is done (wait_for), dedupe state."""

    flows: dict[int, _Flow] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)  # job name -> clones not yet done
    done: dict[str, asyncio.Event] = field(default_factory=dict)
    dedupe: dict[int, _Dedupe] = field(default_factory=dict)  # dedupe_global: one per run
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
            job.cmdprio_table(_READ), job.cmdprio_table(_WRITE), [])
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
        variable = any(job.block_sizes(d)[0] != job.block_sizes(d)[1] for d in (_READ, _WRITE))
        self._grain = job.block_sizes(_WRITE)[0] if self.verifier is not None and variable else 0
        self.stop = False
        self.done = False  # stopped as fio's td->done (the job is over), not terminated
        self._sleepers: set[asyncio.Future[None]] = set()  # pauses a halt() ends
        self.writes = 0
        self.seq = 0
        self.t0 = 0
        self.t_meas = 0  # when the measured part began (after ramp_time, or a latency_target reset)
        self.buf_rng = random.Random(derive_seed(job, cr.number, "buffers"))
        self.prio = _Priorities(job, cr.number) if job.ioprio or job.uses_cmdprio else None
        self.pacers: list[_Pacer | None] | None = None
        if any(job.rate) or any(job.rate_iops):
            self.pacers = [_Pacer(job.rate[d], job.rate_iops[d], job.rate_process == "poisson",
                                  derive_seed(job, cr.number, f"rate:{d}")) if job.rate[d] or job.rate_iops[d]
                           else None for d in (_READ, _WRITE)] + [None]  # trims are not paced
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
            if job.dedupe_global:
                self.dedupe = self.shared.dedupe.setdefault(0, _Dedupe(job, derive_seed(job, 0, "dedupe"), ws))
            else:
                self.dedupe = _Dedupe(job, derive_seed(job, cr.number, "dedupe"), ws)

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
            cr.sizes = tuple(array.array("q") for _ in _DIRS)
        if logs:
            cr.offs = tuple(array.array("q") for _ in _DIRS)
            if self.prio is not None:
                cr.prios = tuple(array.array("q") for _ in _DIRS)
        return True

    def _buffers(self, w: int) -> tuple[Any, Any]:
        got = self._worker_bufs.get(w)  # a worker of a later pass takes the same ones
        if got is not None:
            return got
        job, f = self.job, self.files[0]
        rb = f.allocate_buffer(max(job.block_sizes(_READ)[1], job.block_sizes(_WRITE)[1]))
        wb = f.allocate_buffer(job.block_sizes(_WRITE)[1]) if job.does_writes else None
        self.bufs.extend(b for b in (rb, wb) if b is not None)
        if wb is not None:
            self._fill(wb, len(wb))
        self._worker_bufs[w] = (rb, wb)
        return rb, wb

    def _fill(self, buf: Any, n: int, rng: random.Random | None = None) -> None:
        job = self.job
        mv = memoryview(buf)[:n]
        if job.zero_buffers:
            mv[:] = bytes(n)
        elif job.buffer_pattern is not None:
            p = job.buffer_pattern
            mv[:] = (p * (-(-n // len(p))))[:n]
        else:
            mv[:] = (rng or self.buf_rng).randbytes(n)  # fio writes random data by default
            pct = job.buffer_compress_percentage
            if pct:
                chunk = job.buffer_compress_chunk
                zeros = chunk * pct // 100
                for c in range(0, n, chunk):
                    mv[c:c + min(zeros, n - c)] = bytes(min(zeros, n - c))

    def _prepare_write(self, buf: Any, pos: int, n: int, vseq: int = 0) -> None:
        job = self.job
        self.seq += 1
        if self.dedupe is not None:
            # fio turns refill_buffers on with dedupe: each write's bytes come from its seed, so a
            # repeated seed is a repeated (dedupable) buffer; no stamp that would make it unique.
            self._fill(buf, n, random.Random(self.dedupe.next_seed()))
        elif job.refill_buffers:
            self._fill(buf, n)
        elif job.scramble_buffers and not job.zero_buffers and job.buffer_pattern is None and \
                not job.buffer_compress_percentage and n >= 16:
            struct.pack_into("<QQ", buf, 0, pos, self.seq)  # no two writes alike (no dedupe shortcut)
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
        tasks = [asyncio.ensure_future(self._worker(w)) for w in range(job.depth)]

        async def timer() -> None:
            if ramp > 0:
                await asyncio.sleep(ramp)
                cr.reset_stats()
                self.t_meas = self.t0 = time.perf_counter_ns()
            if job.runtime_s is not None:
                await asyncio.sleep(job.runtime_s)
                self.halt()

        side = [asyncio.ensure_future(timer())]
        try:
            await self._gather(tasks)
            if self.passes:
                # fio's do_io/do_verify (backend.c): a pass that the runtime cut is not verified,
                # and the runtime ends a verify too.
                while not cr.error and not self.stop:
                    await self._drop_all()  # fio reopens the files for the verify and each pass
                    await self._verify_written(None)
                    if cr.error or self.stop:
                        break
                    self.plan = self._new_plan()
                    self.plan.prepare()
                    self._plan_done = False
                    await self._drop_all()
                    await self._gather([asyncio.ensure_future(self._worker(w)) for w in range(job.depth)])
            elif not cr.error and self.verifier is not None and job.does_writes and job.do_verify and \
                    (not self.stop or self.done):
                # fio's thread_main: a job terminated in do_io (its runtime, fill_device's ENOSPC,
                # steady state, exitall) breaks out before do_verify; one done (latency_target's
                # search over) verifies.
                self.stop = False
                await self._drop_all()
                await self._verify_written(None)
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
        for d in (_READ, _WRITE):
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
                if d == _WRITE:
                    self.wseq += 1
                    if job.do_verify:
                        for k in keys:
                            self.last_write[k] = self.wseq
                        self.written.append((fi, pos, n, self.wseq))
                self.inflight.update(keys)
            self.n_inflight += 1
            try:
                if d == _WRITE:
                    self._prepare_write(buf, pos, n, self.wseq)
                    t = clock()
                    await (f.dma_write(pos, buf, ioprio=ioprio) if ioprio else f.dma_write(pos, buf))
                elif d == _READ:
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
                    if verifier is not None and d == _WRITE and job.do_verify:
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
                    self._admitted -= 1
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
                if lt.completed(t2 - t, t2, self.ios_done):
                    cr.fail(_errno.ETIMEDOUT, f"{job.name}: latency of {t2 - t} nsec exceeds latency_target "
                                              f"({lt.target} nsec) at depth 1")
                    self.halt()
                    return
                if lt.done:
                    self.done = True  # fio's td->done, not td->terminate
                    self.halt()
                    return
                self._gate_wake()  # the depth may have grown
            if rate_min:
                self._check_min_rate(t2)
            if verifier is not None:
                if d == _READ:
                    if not job.does_writes:  # a read job checks data written before; a mixed
                        self._check(buf, fi, pos, n)  # one checks its own writes afterwards
                elif job.do_verify:
                    if backlog and len(self.written) >= backlog:
                        await self._verify_written(rb)
            if d == _WRITE and sync_every:
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
        kind = 2 if e.errno == _errno.EILSEQ else 0 if d == _READ else 1
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
            b = self.files[0].allocate_buffer(max(self.job.block_sizes(_WRITE)[1], 4096))
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
            cr.lat[_READ].append(t2 - t)  # fio counts verify reads as reads
            cr.at[_READ].append(t2 - self.t0)
            cr.io_bytes[_READ] += n
            if cr.sizes is not None:
                cr.sizes[_READ].append(n)
            if cr.offs is not None:
                cr.offs[_READ].append(pos)
            if cr.prios is not None:
                cr.prios[_READ].append(self.prio.default if self.prio is not None else 0)
            self._check(b, fi, pos, n, seq)


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
    return bool(j.flow or j.wait_for is not None or j.name in waited or j.exitall or j.dedupe_global
                or (j.steadystate is not None and j.group_reporting))


def _placement(clones: list[CloneRun], shards: int) -> dict[int, int]:
    """Which shard runs each clone (by number): round robin over the shards, except clones whose
    jobs share state with other jobs (flow, wait_for either way, exitall, a group's steady state,
    dedupe_global), which stay on shard 0 with the jobs they share it with."""
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


@dataclass(slots=True)
class JobsRun:
    groups: list[list[CloneRun]]  # one list of clones per stonewall group
    backend: str  # the reactor backend that carried the I/O
    options: ReactorOptions
    started: float  # time.time() at the start
    jobs: list[JobSpec] = field(default_factory=list)
    shards: int = 1


def run_jobs(jobs: list[JobSpec], options: ReactorOptions | None = None, *,
             warn: TextIO | None = None, smp: SmpOptions | None = None) -> JobsRun:
    """Run parsed jobs through ioengine.

    Raises :class:`JobFileError` / :class:`RunError` for what cannot run (before any job starts);
    I/O errors are recorded per clone (``error``, ``error_text``), as fio does.  Notes (layout,
    options run differently from fio) go to ``warn`` (None: nowhere).  ``smp`` with more than one
    shard spreads the clones over the shards (fio runs a process per clone): see
    :func:`_placement` for the ones that stay on shard 0.
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
                      f"wait_for, exitall, a group's steady state, dedupe_global): they run on shard 0",
                      file=warn)
    backend = ioengine.run(main(), **kw)
    return JobsRun(runs, backend, opts, started, jobs, shards)


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
        for i, t in enumerate(c.at[d]):
            k = t // step
            if k >= full:
                continue
            per_window_ios[k] = per_window_ios.get(k, 0) + 1
            per_window_bytes[k] = per_window_bytes.get(k, 0) + (sizes[i] if sizes is not None else bs)
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
        for d in _DIRS:
            group_bw[(e.groupid, d)] = group_bw.get((e.groupid, d), 0.0) + e.direction(d).bw_bytes / 1024
    for e in entries:
        lats = sorted(x for c in e.clones for d in _DIRS for x in c.lat[d])
        lat_ns, lat_us, lat_ms = _latency_buckets(lats)
        level, submit, complete = _depth_json(e.job.depth)
        entry: dict[str, Any] = {
            "jobname": e.name, "groupid": e.groupid, "error": e.error, "eta": 0,
            "elapsed": max(1, round(now - run.started)), "job options": _job_options(e.job),
            "read": _dir_json(e.direction(_READ), group_bw[(e.groupid, _READ)]),
            "write": _dir_json(e.direction(_WRITE), group_bw[(e.groupid, _WRITE)]),
            "trim": _dir_json(e.direction(_TRIM), group_bw[(e.groupid, _TRIM)]),
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
    for d in _DIRS:
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
            (rlo, rhi), (wlo, whi), (tlo, thi) = (j.block_sizes(d) for d in _DIRS)
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
            for d, label, does in ((_READ, " read", e.job.does_reads), (_WRITE, "write", e.job.does_writes),
                                   (_TRIM, "  trim", e.job.does_trims)):
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
            r, w, tr = (e.direction(d) for d in _DIRS)
            lines.append(f"  IO depths    : {e.job.depth}=100.0% (ioengine keeps {e.job.depth} I/O"
                         f"{'s' if e.job.depth > 1 else ''} in flight per clone)")
            lines.append(f"     issued rwts: total={r.ios},{w.ios},{tr.ios},0 short=0,0,0,0 dropped=0,0,0,0")
            if rts == 0 and not e.error:
                lines.append("  (no I/O measured)")
            lines.append("")
        lines.append(f"Run status group {g} (all jobs):")
        for d, label in ((_READ, "   READ"), (_WRITE, "  WRITE"), (_TRIM, "   TRIM")):
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
             smp: SmpOptions | None = None, auto_smp: bool = False, cpuset: str | None = None) -> int:
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
        run = run_jobs(jobs, options, warn=err, smp=smp)
    except (JobFileError, RunError) as e:
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
