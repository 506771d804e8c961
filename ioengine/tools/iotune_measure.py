"""iotune: the measurements, driven through ioengine's own File API (O_DIRECT, the reactor's ring).

Each phase is a closed loop: ``depth`` tasks, each awaiting one dma_read/dma_write after another,
for a warm-up (not counted) and then a measured window that is cut into sample intervals (1 s, or
shorter for short runs so there are at least :data:`MIN_SAMPLES`). The figure is the completions
of the whole window over its length; the spread is the standard deviation of the per-interval
rates over their mean (Seastar's ``stdev / average``).
"""
from __future__ import annotations

import asyncio
import errno
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import ioengine
from ioengine import OpenFlags

from .iotune_device import IotuneError

#: The four calibration phases, in Seastar's order: name → (fio rw, write?, sequential?, title).
PHASES: dict[str, tuple[str, bool, bool, str]] = {
    "seq_write": ("write", True, True, "sequential write"),
    "seq_read": ("read", False, True, "sequential read"),
    "rand_write": ("randwrite", True, False, "random write"),
    "rand_read": ("randread", False, False, "random read"),
}
#: A measured window is cut into at least this many samples (short runs sample faster than 1 s).
MIN_SAMPLES = 5
#: Sample interval of long runs (Seastar's: one second).
SAMPLE_INTERVAL = 1.0
#: Random offsets are drawn before the clock starts, into a table this long (shared by the workers).
OFFSET_TABLE = 1 << 19
#: How often the progress callback is told the time, when there is one.
PROGRESS_TICK = 0.25

Progress = Callable[[float], None]  # called with the seconds elapsed in the phase


@dataclass(frozen=True, slots=True)
class Workload:
    """One access pattern: a phase name of :data:`PHASES`, a buffer size and a queue depth."""

    phase: str
    bs: int
    depth: int

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}")
        if self.bs <= 0 or self.depth <= 0:
            raise ValueError(f"buffer size and depth must be positive, got {self.bs}, {self.depth}")

    @property
    def rw(self) -> str:
        return PHASES[self.phase][0]

    @property
    def write(self) -> bool:
        return PHASES[self.phase][1]

    @property
    def sequential(self) -> bool:
        return PHASES[self.phase][2]

    @property
    def title(self) -> str:
        return PHASES[self.phase][3]

    @property
    def describe(self) -> str:
        return f"{self.title}, {fmt_size(self.bs)} at depth {self.depth}"


@dataclass(slots=True)
class PhaseResult:
    """What one closed-loop phase measured (the warm-up excluded)."""

    workload: Workload
    ios: int
    seconds: float
    samples: list[float]  # completions per second in each sample interval
    interval: float
    loop_cpu: float  # share of one core the event-loop thread used in the window (0..1)
    backend: str
    extra: dict = field(default_factory=dict)

    @property
    def iops(self) -> float:
        return self.ios / self.seconds if self.seconds > 0 else 0.0

    @property
    def bandwidth(self) -> float:
        """Bytes per second."""
        return self.iops * self.workload.bs

    @property
    def value(self) -> float:
        """The figure the properties file takes: bandwidth for sequential phases, IOPS for random."""
        return self.bandwidth if self.workload.sequential else self.iops

    @property
    def spread(self) -> float:
        """Per-interval standard deviation over the mean (0.03 = 3 %); 0 with fewer than 2 samples."""
        if len(self.samples) < 2:
            return 0.0
        mean = statistics.fmean(self.samples)
        return statistics.pstdev(self.samples) / mean if mean > 0 else math.inf

    @property
    def cpu_bound(self) -> bool:
        """The event-loop thread was busy nearly all the window: the engine, not the disk, set the pace."""
        return self.loop_cpu >= CPU_BOUND_SHARE


def merge_results(parts: list[PhaseResult]) -> PhaseResult:
    """Pool windows of the same workload measured apart (their samples, completions and time add up)."""
    first = parts[0]
    seconds = sum(p.seconds for p in parts)
    return PhaseResult(first.workload, sum(p.ios for p in parts), seconds, [x for p in parts for x in p.samples],
                       first.interval, sum(p.loop_cpu * p.seconds for p in parts) / seconds if seconds else 0.0,
                       first.backend)


#: Above this share of a core on the loop thread a phase is reported as CPU-bound.
CPU_BOUND_SHARE = 0.90


def fmt_size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


_TABLES: dict[tuple[int, int, int], list[int]] = {}


def random_offsets(nblocks: int, bs: int, seed: int) -> list[int]:
    """A table of block-aligned random offsets in [0, nblocks*bs), drawn once per (file, size, seed)."""
    key = (nblocks, bs, seed)
    table = _TABLES.get(key)
    if table is None:
        r = random.Random(seed).random
        table = [int(r() * nblocks) * bs for _ in range(OFFSET_TABLE)]
        _TABLES.clear()  # keep one: the next phases use the same file
        _TABLES[key] = table
    return table


def _fill_random(bufs: list, seed: int) -> None:
    rnd = random.Random(seed)
    for b in bufs:
        b[:] = rnd.randbytes(len(b))  # incompressible: no device takes a shortcut


async def _wait_or_fail(tasks: list[asyncio.Task], timeout: float) -> None:
    """Sleep ``timeout`` s, but raise at once if a worker failed (its error, e.g. EIO or ENOSPC)."""
    if timeout <= 0:
        return
    done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


async def _sleep_with_progress(tasks: list[asyncio.Task], until: float, t_start: float,
                               progress: Progress | None) -> None:
    clock = time.perf_counter
    while True:
        left = until - clock()
        if left <= 0:
            return
        if progress is None:
            await _wait_or_fail(tasks, left)
            return
        await _wait_or_fail(tasks, min(left, PROGRESS_TICK))
        progress(clock() - t_start)


async def closed_loop(f: ioengine.File, wl: Workload, size: int, warmup: float, seconds: float, *,
                      seed: int = 1, progress: Progress | None = None, base: int = 0,
                      start: float | None = None) -> PhaseResult:
    """Run ``wl`` on ``size`` bytes of the open file ``f`` from ``base``: warm-up, then a sampled
    window. ``start``: a time.monotonic() to begin at (shards measuring together)."""
    bs, depth = wl.bs, wl.depth
    align = f.disk_write_dma_alignment if wl.write else f.disk_read_dma_alignment
    if bs % align:
        raise IotuneError(f"the {wl.title} buffer size {bs} is not a multiple of {align}, the "
                          f"{'write' if wl.write else 'read'} alignment of {f.path!r}")
    nblocks = size // bs
    if nblocks < 1:
        raise IotuneError(f"the test file ({size} bytes) is smaller than one {fmt_size(bs)} buffer")
    end = base + nblocks * bs
    offs = None if wl.sequential else random_offsets(nblocks, bs, seed)
    if offs is not None and base:
        offs = [base + o for o in offs]
    bufs = [f.allocate_buffer(bs) for _ in range(depth)]
    if wl.write:
        _fill_random(bufs, seed)
    stop = False
    done = 0
    cursor = base
    op = f.write_future if wl.write else f.read_future

    async def seq_worker(buf: ioengine.DmaBuffer) -> None:
        nonlocal done, cursor
        while not stop:
            pos = cursor
            cursor = pos + bs if pos + bs < end else base
            await op(pos, buf)
            done += 1

    async def rand_worker(buf: ioengine.DmaBuffer, start: int) -> None:
        nonlocal done
        table = offs
        mask = OFFSET_TABLE - 1
        i = start
        while not stop:
            await op(table[i & mask], buf)  # type: ignore[index]
            i += 1
            done += 1

    if start is not None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
    clock = time.perf_counter
    t_start = clock()
    if wl.sequential:
        tasks = [asyncio.create_task(seq_worker(b)) for b in bufs]
    else:
        stride = OFFSET_TABLE // depth
        tasks = [asyncio.create_task(rand_worker(b, i * stride)) for i, b in enumerate(bufs)]
    try:
        await _sleep_with_progress(tasks, t_start + warmup, t_start, progress)
        k = max(MIN_SAMPLES, round(seconds / SAMPLE_INTERVAL))
        interval = seconds / k
        t0, c0, cpu0 = clock(), done, time.thread_time()
        prev_t, prev_c = t0, c0
        samples: list[float] = []
        for i in range(1, k + 1):
            await _sleep_with_progress(tasks, t0 + i * interval, t_start, progress)
            t, c = clock(), done
            samples.append((c - prev_c) / (t - prev_t))
            prev_t, prev_c = t, c
        cpu = (time.thread_time() - cpu0) / (prev_t - t0)
    finally:
        stop = True
        await _finish(tasks)
        for b in bufs:
            b.release()
    backend = ioengine.get_reactor().backend.name
    return PhaseResult(wl, prev_c - c0, prev_t - t0, samples, interval, cpu, backend)


async def _finish(tasks: list[asyncio.Task]) -> None:
    """Let the workers end after their I/O in flight; if we are being cancelled, cancel them too."""
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            raise r


async def measure(path: str, wl: Workload, size: int, warmup: float, seconds: float, *,
                  seed: int = 1, progress: Progress | None = None, base: int = 0,
                  start: float | None = None) -> PhaseResult:
    """Open the test file and run one phase; writes end with an fdatasync (not timed, as in Seastar)."""
    async with await ioengine.open_file_dma(path, OpenFlags.RW if wl.write else OpenFlags.RO) as f:
        res = await closed_loop(f, wl, size, warmup, seconds, seed=seed, progress=progress, base=base, start=start)
        if wl.write:
            await f.flush()
        return res


def shard_depths(depth: int, shards: int) -> list[int]:
    """``depth`` split over ``shards`` as Seastar's iotune splits it (the first ones get the rest)."""
    return [depth // shards + (1 if k < depth % shards else 0) for k in range(shards)]


async def measure_on_shards(path: str, wl: Workload, size: int, warmup: float, seconds: float, shards: int, *,
                            seed: int = 1, progress: Progress | None = None) -> PhaseResult:
    """One phase on every shard at once (Seastar's iotune runs its workloads on all shards): the
    depth split over the shards; random phases each over the whole file, sequential ones each
    over its own contiguous part. Run on shard 0 of an ``ioengine.run(..., smp=shards)``."""
    from ioengine import smp

    start = time.monotonic() + 0.1  # every shard has opened the file by then
    depths = shard_depths(wl.depth, shards)
    part = size // shards // wl.bs * wl.bs if wl.sequential else size
    calls: list[Awaitable[PhaseResult]] = []
    for k, d in enumerate(depths):
        if d == 0:
            continue
        one = Workload(wl.phase, wl.bs, d)
        base = k * part if wl.sequential else 0
        if k == 0:
            calls.append(measure(path, one, part, warmup, seconds, seed=seed, progress=progress, base=base,
                                 start=start))
        else:
            calls.append(smp.submit_to(k, measure, path, one, part, warmup, seconds, seed=seed + k, base=base,
                                       start=start))
    return merge_shards(wl, list(await asyncio.gather(*calls)))


def merge_shards(wl: Workload, parts: list[PhaseResult]) -> PhaseResult:
    """The shards' windows of one phase, measured together: completions add up, per sample too;
    the loop CPU is the busiest shard's."""
    seconds = statistics.fmean(p.seconds for p in parts)
    k = min(len(p.samples) for p in parts)
    samples = [sum(p.samples[i] for p in parts) for i in range(k)]
    ios = sum(p.ios for p in parts)
    return PhaseResult(wl, ios, seconds, samples, parts[0].interval, max(p.loop_cpu for p in parts),
                       parts[0].backend, {"shards": len(parts)})


async def lay_out(path: str, size: int, bs: int, depth: int, budget: float, *,
                  progress: Progress | None = None) -> tuple[int, float]:
    """Create the test file and write it sequentially (random data) until ``size`` or ``budget`` s.

    Space is reserved first (fallocate), so a full disk fails at once. Returns (the size laid out,
    rounded down to ``bs``; the seconds it took). A file cut short by the budget is truncated to
    what was written: no phase ever reads a hole, which the filesystem would answer without I/O.
    """
    clock = time.perf_counter
    t_start = clock()
    size -= size % bs
    async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE | OpenFlags.EXCLUSIVE) as f:
        if bs % f.disk_write_dma_alignment:
            raise IotuneError(f"the sequential write buffer size {bs} is not a multiple of "
                              f"{f.disk_write_dma_alignment}, the write alignment of {path!r}")
        try:
            await f.allocate(0, size)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise IotuneError(f"not enough free space for a {fmt_size(size)} test file in "
                                  f"{path.rsplit('/', 1)[0]!r}: {e.strerror}") from None
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        await f.truncate(size)
        bufs = [f.allocate_buffer(bs) for _ in range(depth)]
        _fill_random(bufs, 7)
        cursor = 0
        deadline = t_start + budget

        async def worker(buf: ioengine.DmaBuffer) -> None:
            nonlocal cursor
            while cursor < size and clock() < deadline:
                pos = cursor
                cursor += bs
                await f.write_future(pos, buf)
                if progress is not None and pos % (64 * bs) == 0:
                    progress(clock() - t_start)

        tasks = [asyncio.create_task(worker(b)) for b in bufs]
        try:
            await _finish(tasks)
        finally:
            for b in bufs:
                b.release()
        written = min(cursor, size)
        if written < size:
            await f.truncate(written)
        await f.flush()
    return written, clock() - t_start


async def saturation_length(path: str, phase: str, start_bs: int, min_bs: int, threshold: float, size: int,
                            warmup: float, seconds: float, *,
                            progress: Callable[[int], Progress | None] | None = None) -> tuple[int, list[PhaseResult]]:
    """Seastar's saturation search: sequential I/O at depth 1 with halving buffers, from ``start_bs``.

    The first size whose bandwidth falls below ``threshold`` (bytes/s) ends the search; the answer
    is the size before it (twice it) — the smallest request that alone still keeps the disk at the
    bandwidth measured with several in flight. Never below ``min_bs``.
    """
    steps: list[PhaseResult] = []
    bs = start_bs
    async with await ioengine.open_file_dma(path, OpenFlags.RW) as f:
        while True:
            res = await closed_loop(f, Workload(phase, bs, 1), size, warmup, seconds,
                                    progress=progress(bs) if progress else None)
            steps.append(res)
            if res.bandwidth < threshold:
                return bs * 2, steps
            if bs // 2 < min_bs:
                return bs, steps
            bs //= 2


#: Seastar's candidate physical block sizes.
PBS_CANDIDATES = (512, 1024, 2048, 4096, 8192)


async def detect_physical_block_size(path: str, size: int, depth: int, warmup: float, seconds: float, *,
                                     progress: Callable[[int], Progress | None] | None = None
                                     ) -> tuple[int | None, list[PhaseResult], list[int]]:
    """Random writes at each candidate size; the first size the next one does not beat by > 5 %.

    ioengine aligns writes to the physical block size the device reports (smaller writes would make
    the device read-modify-write), so candidates below the file's write alignment cannot be issued:
    they are returned as the third element, skipped. What this can find is a disk whose real block is
    *larger* than it reports — the case the override exists for.
    """
    async with await ioengine.open_file_dma(path, OpenFlags.RW) as f:
        floor = f.disk_write_dma_alignment
        skipped = [a for a in PBS_CANDIDATES if a < floor]
        cands = [a for a in PBS_CANDIDATES if a >= floor] or [floor]
        if len(cands) < 2:
            cands.append(cands[-1] * 2)
        results = []
        for a in cands:
            results.append(await closed_loop(f, Workload("rand_write", a, depth), size, warmup, seconds,
                                             progress=progress(a) if progress else None))
        await f.flush()
    iops = [r.iops for r in results]
    for i in range(len(cands) - 1):
        if iops[i + 1] <= iops[i] * 1.05:
            return cands[i], results, skipped
    best = max(iops)
    return min(a for a, v in zip(cands, iops) if v >= best * 0.95), results, skipped
