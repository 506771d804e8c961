"""ioengine's side of a benchmark: the same patterns fio runs, driven through the File API.

Each run happens in its own event loop (asyncio's default one or uvloop's) and reactor and reports what
fio reports: I/O count, bytes, seconds, CPU seconds of the whole process (user + sys), and optionally latencies.
"""
from __future__ import annotations

import array
import asyncio
import math
import os
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import ioengine
from ioengine import IoFuture, OpenFlags, ReactorOptions
from ioengine.file import File, FileSink
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

#: Offsets are drawn ahead of time so the random generator is not on the measured path.
_OFFSET_TABLE = 1 << 13


@dataclass(frozen=True, slots=True)
class Pattern:
    """One fio-like pattern: ``rw`` is read, write, randread, randwrite or randrw."""

    rw: str
    bs: int = 4096
    iodepth: int = 32
    rwmixread: int = 100  # for randrw

    #: "file": dma_read/dma_write at iodepth; "stream": the input/output stream with
    #: read_ahead = iodepth - 1 (fio's equivalent is iodepth) / write_behind = iodepth.
    api: str = "file"

    @property
    def random(self) -> bool:
        return self.rw.startswith("rand")

    def fio_args(self) -> list[str]:
        args = [f"--rw={self.rw}", f"--bs={self.bs}", f"--iodepth={self.iodepth}"]
        if self.rw == "randrw":
            args.append(f"--rwmixread={self.rwmixread}")
        return args


@dataclass(slots=True)
class RunResult:
    ios: int
    bytes: int
    seconds: float
    cpu_seconds: float
    latencies_ns: list[int] = field(default_factory=list)
    #: An smp run's per-shard results (in shard order, without their latencies); empty otherwise.
    shards: list[RunResult] = field(default_factory=list)

    @property
    def iops(self) -> float:
        return self.ios / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def cpu_us_per_io(self) -> float:
        return self.cpu_seconds / self.ios * 1e6 if self.ios else float("nan")

    def percentile_us(self, p: float) -> float:
        return self.percentiles_us((p,))[0]

    def percentiles_us(self, ps: tuple[float, ...] = (50.0, 99.0, 99.9)) -> tuple[float, ...]:
        """Latency percentiles in µs (one sort for all of them); NaN when nothing was measured."""
        if not self.latencies_ns:
            return tuple(float("nan") for _ in ps)
        s = sorted(self.latencies_ns)
        return tuple(s[percentile_index(len(s), p)] / 1000 for p in ps)


def percentile_index(n: int, p: float) -> int:
    """Index of the ``p``-th percentile in ``n`` sorted samples: the smallest sample such that at
    least ``p`` % of all samples are <= it (fio's rule for its histogram buckets)."""
    return min(n - 1, max(0, math.ceil(n * p / 100.0) - 1))


class _Timer:
    """Wall time and CPU time (user + sys of the whole process) of a ``with`` block."""

    __slots__ = ("_r0", "_t0", "elapsed", "cpu")

    def __enter__(self) -> _Timer:
        self._r0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self._t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = (r1.ru_utime - self._r0.ru_utime) + (r1.ru_stime - self._r0.ru_stime)


async def _run_workers(worker: Any, n: int, seconds: float) -> _Timer:
    """Start ``n`` tasks ``worker(i, running)``, stop them after ``seconds``; the timing of it all.

    ``running`` is a one-element list the workers poll (``while running[0]:``)."""
    running = [True]
    with _Timer() as t:
        tasks = [asyncio.create_task(worker(i, running)) for i in range(n)]
        await asyncio.sleep(seconds)
        running[0] = False
        await asyncio.gather(*tasks)
    return t


def _timed_file_class(lat: list[int]) -> type[File]:
    """A File subclass that times the I/Os the streams issue (read_future / its sink's put),
    without touching the streams' code.

    Writes are timed from ``put`` to its ``on_done``, which the reactor calls as it reaps the
    completion. A done-callback would not do for them: the output stream settles writes whose
    future is already done without suspending, so while it keeps finding them done it does not
    yield to the loop and callbacks wait (measured: up to ~50 ms). Reads have no such hook and are
    timed from the call to the future's done-callback; the input stream waits for its reads, so
    that callback runs in the loop turn the read completes.
    """
    clock = time.perf_counter_ns
    append = lat.append

    class TimedSink(FileSink):
        __slots__ = ()

        def put(self, pos: int, buf: Any, io_class: Any = None, on_done: Any = None) -> IoFuture[int]:
            t = clock()  # the output stream issues its writes here

            def done(req: tuple, res: int) -> None:
                append(clock() - t)
                if on_done is not None:
                    on_done(req, res)

            return FileSink.put(self, pos, buf, io_class, done)

    class TimedFile(File):
        __slots__ = ()

        def read_future(self, pos: int, buf: Any, io_class: Any = None, *, ioprio: int = 0) -> IoFuture[int]:
            t = clock()
            fut = File.read_future(self, pos, buf, io_class, ioprio=ioprio)
            fut.add_done_callback(lambda _f: append(clock() - t))
            return fut

        def sink(self) -> FileSink:
            return TimedSink(self)

    return TimedFile


async def _run_stream(path: str, size: int, pattern: Pattern, seconds: float, latency: bool) -> RunResult:
    """Sequential read or write through the streams, wrapping around at ``size``.

    With ``latency``, each I/O the stream issues is timed from its submission to its completion
    (fio's view); the stream's consumer-visible waits are not what is measured.
    """
    lat: list[int] = []
    timed = _timed_file_class(lat) if latency else None
    total = 0
    ios = 0
    with _Timer() as timer:
        deadline = time.perf_counter() + seconds
        if pattern.rw == "read":
            opts = FileInputStreamOptions(buffer_size=pattern.bs, read_ahead=max(0, pattern.iodepth - 1))
            async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
                if timed is not None:
                    f.__class__ = timed
                while time.perf_counter() < deadline:
                    async with make_file_input_stream(f, 0, size, opts) as s:
                        async for chunk in s:
                            total += len(chunk)
                            ios += 1
                            if time.perf_counter() >= deadline:
                                break
        else:
            out_opts = FileOutputStreamOptions(buffer_size=pattern.bs, write_behind=pattern.iodepth)
            data = random.Random(0).randbytes(pattern.bs)
            while time.perf_counter() < deadline:
                f = await ioengine.open_file_dma(path, OpenFlags.WO)
                if timed is not None:
                    f.__class__ = timed
                async with make_file_output_stream(f, out_opts) as out:
                    written = 0
                    while written < size and time.perf_counter() < deadline:
                        await out.write(data)
                        written += len(data)
                        ios += 1
                total += written
    return RunResult(ios, total, timer.elapsed, timer.cpu, lat)


async def _run(path: str, size: int, pattern: Pattern, seconds: float, latency: bool, seed: int,
               region: tuple[int, int] | None = None, ready: Any = None) -> RunResult:
    """One run of a file-API ``pattern`` (streams: :func:`_run_stream`) over the first ``size``
    bytes of ``path``, or over ``region`` = (start, length) when given (a shard's part of the file).

    ``ready``: an async callable awaited once the file is open and the offsets drawn, just before
    the clock starts (the shards' start barrier, see :func:`run_pattern_smp`).
    """
    if pattern.api == "stream":
        if region is not None or ready is not None:
            raise ValueError("the stream rows run on one shard only (no region, no start barrier)")
        return await _run_stream(path, size, pattern, seconds, latency)
    writes = pattern.rw in ("write", "randwrite", "randrw")
    flags = OpenFlags.RW if writes else OpenFlags.RO
    f = await ioengine.open_file_dma(path, flags)
    try:
        bs = pattern.bs
        start, length = region if region is not None else (0, size)
        if start % bs:
            raise ValueError(f"region start {start} is not a multiple of the block size {bs}")
        nblocks = length // bs
        if nblocks < 1:
            raise ValueError(f"region of {length} bytes holds no block of {bs} bytes")
        rng = random.Random(seed)
        count = 0
        lat: list[int] = []
        seq_next = start

        async def worker(wid: int, running: list[bool]) -> None:
            # One tight loop per pattern: the benchmark's own Python must not hide ioengine's cost.
            nonlocal count, seq_next
            buf = f.allocate_buffer(bs)
            read, write = f.dma_read, f.dma_write
            mask = _OFFSET_TABLE - 1
            n = 0
            clock = time.perf_counter_ns
            if pattern.random:
                offs, is_read = tables[wid]  # type: ignore[misc]  # a table per worker when random
                if pattern.rw == "randrw":
                    ops = [read if r else write for r in is_read]
                    mask_op = mask
                else:
                    ops = [read if pattern.rw == "randread" else write]
                    mask_op = 0
                if latency:
                    while running[0]:
                        t = clock()
                        await ops[n & mask_op](offs[n & mask], buf)
                        lat.append(clock() - t)
                        n += 1
                elif mask_op == 0:
                    op = ops[0]
                    while running[0]:
                        await op(offs[n & mask], buf)
                        n += 1
                else:
                    while running[0]:
                        await ops[n & mask_op](offs[n & mask], buf)
                        n += 1
            else:
                op = read if pattern.rw == "read" else write
                end = start + nblocks * bs
                while running[0]:
                    pos = seq_next
                    seq_next = pos + bs if pos + bs < end else start
                    if latency:
                        t = clock()
                        await op(pos, buf)
                        lat.append(clock() - t)
                    else:
                        await op(pos, buf)
                    n += 1
            count += n
            buf.release()

        # Drawn before the clock starts: the generator is not what we measure.
        tables = [([start + rng.randrange(nblocks) * bs for _ in range(_OFFSET_TABLE)],
                   [rng.randrange(100) < pattern.rwmixread for _ in range(_OFFSET_TABLE)])
                  if pattern.random else None for _ in range(pattern.iodepth)]
        if ready is not None:
            await ready()
        t = await _run_workers(worker, pattern.iodepth, seconds)
        return RunResult(count, count * bs, t.elapsed, t.cpu, lat)
    finally:
        await f.close()


#: The event loops a run can use: asyncio's default loop and uvloop (when installed).
LOOPS = ("asyncio", "uvloop")


class UvloopUnavailable(RuntimeError):
    """uvloop cannot be imported; the message says how to get it."""


def uvloop_module() -> Any:
    """The uvloop module, or UvloopUnavailable saying how to install it."""
    try:
        import uvloop
    except ImportError as e:
        raise UvloopUnavailable(f"uvloop is not installed ({e}); pip install uvloop "
                                f"(or 'ioengine[test]') to run ioengine on uvloop too") from None
    return uvloop


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


async def _checked_loop(coro: Any, loop: str) -> Any:
    """Await ``coro`` after checking the running loop is the one asked for (a policy set by someone
    else, or an ``asyncio.run`` that ignored it, would silently measure the wrong loop)."""
    running = asyncio.get_running_loop()
    if is_uvloop(running) != (loop == "uvloop"):
        coro.close()
        kind = f"{type(running).__module__}.{type(running).__qualname__}"
        raise RuntimeError(f"asked to run on the {loop} loop, but the running loop is {kind}")
    return await coro


def run_on_loop(coro: Any, loop: str = "asyncio", **options: Any) -> Any:
    """``ioengine.run(coro, **options)`` on a fresh loop of kind ``loop``: "asyncio" (the default
    event loop policy's loop) or "uvloop" (uvloop's policy, set for the run and restored after).

    Raises ValueError for another name and :class:`UvloopUnavailable` when uvloop is missing."""
    if loop not in LOOPS:
        coro.close()
        raise ValueError(f"unknown loop {loop!r}; known loops: {', '.join(LOOPS)}")
    try:
        policy = uvloop_module().EventLoopPolicy() if loop == "uvloop" else asyncio.DefaultEventLoopPolicy()
    except UvloopUnavailable:
        coro.close()
        raise
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(policy)
    try:
        return ioengine.run(_checked_loop(coro, loop), **options)
    finally:
        asyncio.set_event_loop_policy(previous)


def run_pattern(path: str, pattern: Pattern, seconds: float, options: ReactorOptions | None = None, *,
                latency: bool = False, seed: int = 1, size: int | None = None, loop: str = "asyncio") -> RunResult:
    """Run ``pattern`` on the first ``size`` bytes (default: all) of ``path`` for ``seconds``
    through ioengine (its own loop and reactor); ``loop``: "asyncio" (the default loop) or "uvloop"."""
    if size is None:
        size = os.path.getsize(path)
    opts = options or ReactorOptions()
    return run_on_loop(_run(path, size, pattern, seconds, latency, seed), loop, **opts.as_dict())


# ----------------------------------------------------------------------------------------------
# The same patterns on N shards (ioengine.smp): fio's numjobs=N.

#: Latencies cross shards in chunks of this many (8 bytes each): a result must fit in a ring.
_LATENCY_CHUNK = 1 << 15
#: How far ahead of "now" the shards are told to start: the "go" calls must reach every shard.
_START_MARGIN_S = 0.02


class SmpLoopMismatch(RuntimeError):
    """A shard runs another kind of event loop than the one asked for."""


def shard_seed(seed: int, shard: int) -> int:
    """Each shard's random seed: shard 0 keeps ``seed`` (a one-shard run draws what run_pattern
    draws), the others get their own offsets."""
    return seed + 7919 * shard


def shard_region(pattern: Pattern, size: int, smp: int, shard: int) -> tuple[int, int] | None:
    """The part of the file a shard works on: None (the whole file) for random patterns, like fio's
    numjobs on one filename; for sequential ones shard k's contiguous 1/N of the file, rounded down
    to the block size, like fio's ``size=size/N offset_increment=size/N``."""
    if pattern.random or smp == 1:
        return None
    part = seq_part_size(pattern, size, smp)
    return (shard * part, part)


def seq_part_size(pattern: Pattern, size: int, smp: int) -> int:
    """Bytes of each shard's (and fio job's) region in a sequential smp run."""
    part = size // smp // pattern.bs * pattern.bs
    if part < pattern.bs:
        raise ValueError(f"a {size}-byte file split over {smp} shards leaves less than one "
                         f"{pattern.bs}-byte block each")
    return part


def loop_kind() -> str:
    """"uvloop" or "asyncio": the kind of this thread's running loop."""
    return "uvloop" if is_uvloop(asyncio.get_running_loop()) else "asyncio"


@dataclass(slots=True)
class _ShardRun:
    task: asyncio.Task
    start: asyncio.Future  # set by _shard_go: the monotonic time to start at
    result: RunResult | None = None


#: This shard's prepared runs, by token (module state lives per process, i.e. per shard).
_shard_runs: dict[int, _ShardRun] = {}


async def _shard_prepare(token: int, path: str, size: int, pattern: Pattern, seconds: float, latency: bool,
                         seed: int, smp: int) -> str:
    """On every shard: open the file, draw the offsets, then wait at the barrier for ``_shard_go``.
    Returns once armed, with the kind of loop this shard runs on."""
    from .. import smp as _smp

    shard = _smp.this_shard_id()
    loop = asyncio.get_running_loop()
    armed = loop.create_future()
    start = loop.create_future()

    async def ready() -> None:
        armed.set_result(None)
        delay = await start - time.monotonic()  # CLOCK_MONOTONIC: the same clock on every shard
        if delay > 0:
            await asyncio.sleep(delay)

    task = loop.create_task(_run(path, size, pattern, seconds, latency, shard_seed(seed, shard),
                                 shard_region(pattern, size, smp, shard), ready))
    _shard_runs[token] = _ShardRun(task, start)
    await asyncio.wait({armed, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # failed before the barrier (e.g. the file does not open)
        _shard_runs.pop(token, None)
        task.result()
    return loop_kind()


async def _shard_go(token: int, at: float) -> tuple[RunResult, int]:
    """Start at monotonic time ``at``; the run's figures (latencies kept here) and their count."""
    run = _shard_runs[token]
    run.start.set_result(at)
    r = run.result = await run.task
    return RunResult(r.ios, r.bytes, r.seconds, r.cpu_seconds), len(r.latencies_ns)


def _shard_latencies(token: int, offset: int) -> bytes:
    r = _shard_runs[token].result
    assert r is not None
    return array.array("q", r.latencies_ns[offset:offset + _LATENCY_CHUNK]).tobytes()


async def _shard_forget(token: int) -> None:
    run = _shard_runs.pop(token, None)
    if run is not None and not run.task.done():
        run.task.cancel()
        await asyncio.wait({run.task})


def merge_runs(runs: list[RunResult]) -> RunResult:
    """The shards' runs as one, as fio's group_reporting adds its jobs: I/Os, bytes and CPU seconds
    summed, latencies merged; ``seconds`` is such that IOPS (and MB/s) is the sum of the shards'
    IOPS (MB/s). ``shards`` keeps each run without its latencies."""
    ios = sum(r.ios for r in runs)
    rate = sum(r.iops for r in runs)
    seconds = ios / rate if rate else max((r.seconds for r in runs), default=0.0)
    lat = [x for r in runs for x in r.latencies_ns]
    return RunResult(ios, sum(r.bytes for r in runs), seconds, sum(r.cpu_seconds for r in runs), lat,
                     [RunResult(r.ios, r.bytes, r.seconds, r.cpu_seconds) for r in runs])


async def _smp_main(path: str, size: int, pattern: Pattern, seconds: float, latency: bool, seed: int,
                    loop: str) -> RunResult:
    """Shard 0: prepare every shard (the barrier), start them together, collect and merge."""
    from .. import smp as _smp

    n = _smp.smp_count()
    token = random.getrandbits(62)
    try:
        kinds = await _smp.invoke_on_all(_shard_prepare, token, path, size, pattern, seconds, latency, seed, n)
        wrong = [(k, kind) for k, kind in enumerate(kinds) if kind != loop]
        if wrong:
            raise SmpLoopMismatch(f"asked to run on the {loop} loop, but "
                                  + ", ".join(f"shard {k} runs on {kind}'s" for k, kind in wrong))
        at = time.monotonic() + _START_MARGIN_S
        done = await _smp.invoke_on_all(_shard_go, token, at)
        runs = []
        for k, (r, nlat) in enumerate(done):
            lat: list[int] = []
            for off in range(0, nlat, _LATENCY_CHUNK):
                lat.extend(array.array("q", await _smp.submit_to(k, _shard_latencies, token, off)))
            r.latencies_ns = lat
            runs.append(r)
        return merge_runs(runs)
    finally:
        await _smp.invoke_on_all(_shard_forget, token)


def run_pattern_smp(path: str, pattern: Pattern, seconds: float, options: ReactorOptions | None = None, *,
                    smp: int = 2, cpuset: Any = None, latency: bool = False, seed: int = 1,
                    size: int | None = None, loop: str = "asyncio") -> RunResult:
    """Run ``pattern`` on ``smp`` shards at once (one ``ioengine.run(..., smp=smp)``), fio's
    ``numjobs=smp`` on one file: each shard opens the file itself and runs what
    :func:`run_pattern` runs, with its own seed (:func:`shard_seed`), at its own ``iodepth``, over
    the whole file (random patterns) or its own 1/N of it (sequential: :func:`shard_region`).

    The shards start together: every shard first prepares (opens, draws its offsets) and waits;
    then all are told one start time. CPU is each shard process's user + sys around its run
    (getrusage inside the shard), summed; see :func:`merge_runs` for the rest. Stream patterns
    are refused (ValueError): an output stream's close cuts the file where it ends. Raises
    :class:`SmpLoopMismatch` (before any I/O) when a shard does not run on ``loop``.
    """
    if pattern.api == "stream":
        raise ValueError("stream patterns run on one shard only: an output stream's close truncates the file "
                         "where that stream ended, which N writers of one file would fight over")
    if size is None:
        size = os.path.getsize(path)
    if not pattern.random:
        seq_part_size(pattern, size, smp)  # refuse a file too small to split, before any shard starts
    opts = options or ReactorOptions()
    return run_on_loop(_smp_main(path, size, pattern, seconds, latency, seed, loop), loop, smp=smp, cpuset=cpuset,
                       **opts.as_dict())


async def _loop_kinds() -> list[str]:
    from .. import smp as _smp

    return await _smp.invoke_on_all(loop_kind)


def smp_loop_kinds(smp: int, loop: str = "asyncio", options: ReactorOptions | None = None,
                   cpuset: Any = None) -> list[str]:
    """The kind of loop each of ``smp`` shards gets when the run is started on ``loop``'s (whether
    ioengine.smp carries uvloop over to the shard processes)."""
    opts = options or ReactorOptions()
    return run_on_loop(_loop_kinds(), loop, smp=smp, cpuset=cpuset, **opts.as_dict())


#: Granule of the benchmark file's layout: files are written in chunks of this size.
LAYOUT_CHUNK = 1 << 20
_LAYOUT_ALIGN = 4096


async def lay_out(path: str, start: int, end: int, *, chunk: int = LAYOUT_CHUNK) -> None:
    """Write random (incompressible) data over ``[start, end)`` of ``path``, creating it if needed.

    ``start`` is rounded down and ``end`` up to 4 KiB (O_DIRECT); 4 writes in flight, then fdatasync.
    The first failed write (ENOSPC, EFBIG, ...) stops the layout at once: nothing more is issued,
    the writes in flight are awaited (their errors retrieved), and that first error is raised.
    """
    start -= start % _LAYOUT_ALIGN
    end = -(-end // _LAYOUT_ALIGN) * _LAYOUT_ALIGN
    async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
        rnd = random.Random(0)
        bufs = [f.allocate_buffer(chunk) for _ in range(4)]
        for b in bufs:
            b[:] = rnd.randbytes(chunk)  # incompressible, so no device takes a shortcut
        pos = start
        inflight: set[asyncio.Future] = set()
        i = 0
        failed: BaseException | None = None
        try:
            while pos < end and failed is None:
                if len(inflight) >= 4:
                    done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    errors = [e for e in [d.exception() for d in done] if e is not None]  # all retrieved
                    failed = errors[0] if errors else None
                    if failed is not None:
                        break
                n = min(chunk, end - pos)
                inflight.add(asyncio.ensure_future(f.dma_write(pos, bufs[i % 4].trim(0, n))))
                pos += n
                i += 1
            results = await asyncio.gather(*inflight, return_exceptions=True)
            failed = failed or next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
            await f.flush()
        finally:
            for b in bufs:
                b.release()


def ensure_bench_file(path: str, size: int) -> str:
    """Make ``path`` hold exactly ``size`` bytes of random data, written with O_DIRECT.

    A missing file is laid out; a short one (e.g. cut by an output stream's close) gets its
    tail written; a longer one is truncated.  Cheap (one stat) when the file is already right.
    """
    try:
        have = os.path.getsize(path)
    except FileNotFoundError:
        have = -1
    if have == size:
        return path
    if size % LAYOUT_CHUNK:
        raise ValueError(f"benchmark file size must be a multiple of 1 MiB, got {size}")
    if have > size:
        os.truncate(path, size)
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ioengine.run(lay_out(path, max(have, 0), size))
    return path


# ----------------------------------------------------------------------------------------------
# caio (https://pypi.org/project/caio/): an optional third column of the comparison.


class CaioUnavailable(RuntimeError):
    """caio cannot be imported; the message says how to get it."""


def caio_module() -> Any:
    """The caio module, or CaioUnavailable explaining that the column is skipped."""
    try:
        import caio
    except ImportError as e:
        raise CaioUnavailable(f"caio is not installed ({e}); the caio column is skipped "
                              f"(pip install caio to get it)") from None
    if not hasattr(caio, "AsyncioContext"):
        raise CaioUnavailable("the installed caio has no AsyncioContext; the caio column is skipped")
    return caio


async def _run_caio(path: str, size: int, pattern: Pattern, seconds: float, seed: int) -> RunResult:
    caio = caio_module()
    if pattern.api != "file" or not pattern.random:
        raise ValueError("the caio column covers the random file-API rows only")
    writes = pattern.rw in ("randwrite", "randrw")
    # Buffered: caio hands the kernel its own unaligned bytes objects, so O_DIRECT is impossible.
    fd = os.open(path, os.O_RDWR if writes else os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # start cold; the page cache fills anyway
        ctx = caio.AsyncioContext(max_requests=max(pattern.iodepth, 1) * 2)
        bs = pattern.bs
        nblocks = size // bs
        rng = random.Random(seed)
        payload = rng.randbytes(bs)
        count = 0
        lat: list[int] = []
        tables = [([rng.randrange(nblocks) * bs for _ in range(_OFFSET_TABLE)],
                   [rng.randrange(100) < pattern.rwmixread for _ in range(_OFFSET_TABLE)])
                  for _ in range(pattern.iodepth)]

        async def worker(wid: int, running: list[bool]) -> None:
            nonlocal count
            offs, is_read = tables[wid]
            read, write = ctx.read, ctx.write
            mask = _OFFSET_TABLE - 1
            clock = time.perf_counter_ns
            n = 0
            while running[0]:
                i = n & mask
                t = clock()
                if pattern.rw == "randread" or (pattern.rw == "randrw" and is_read[i]):
                    await read(bs, fd, offs[i])
                else:
                    await write(payload, fd, offs[i])
                lat.append(clock() - t)
                n += 1
            count += n

        t = await _run_workers(worker, pattern.iodepth, seconds)
        close = getattr(ctx, "close", None)
        if close is not None:
            close()
        return RunResult(count, count * bs, t.elapsed, t.cpu, lat)
    finally:
        os.close(fd)


def run_caio_pattern(path: str, pattern: Pattern, seconds: float, *, size: int | None = None,
                     seed: int = 1) -> RunResult:
    """Run a random file-API ``pattern`` through caio (buffered I/O) on a plain asyncio loop.

    Raises :class:`CaioUnavailable` when caio is not importable.
    """
    caio_module()
    if size is None:
        size = os.path.getsize(path)
    return asyncio.run(_run_caio(path, size, pattern, seconds, seed))
