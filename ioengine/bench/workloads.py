"""ioengine's side of a benchmark: the same patterns fio runs, driven through the File API.

Each run happens in its own asyncio loop and reactor and reports what fio reports: I/O count,
bytes, seconds, CPU seconds of the whole process (user + sys), and optionally latencies.
"""
from __future__ import annotations

import asyncio
import os
import random
import resource
import time
from dataclasses import dataclass, field

import ioengine
from ioengine import OpenFlags, ReactorOptions
from ioengine.fstream import (FileInputStreamOptions, FileOutputStreamOptions, make_file_input_stream,
                              make_file_output_stream)

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
        if not self.latencies_ns:
            return float("nan")
        s = sorted(self.latencies_ns)
        return s[min(len(s) - 1, int(len(s) * p / 100))] / 1000


async def _run_stream(path: str, size: int, pattern: Pattern, seconds: float) -> RunResult:
    """Sequential read or write through the streams, wrapping around at the end of the file."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    total = 0
    ios = 0
    if pattern.rw == "read":
        opts = FileInputStreamOptions(buffer_size=pattern.bs, read_ahead=max(0, pattern.iodepth - 1))
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            while time.perf_counter() < deadline:
                async with make_file_input_stream(f, 0, size, opts) as s:
                    async for chunk in s:
                        total += len(chunk)
                        ios += 1
                        if time.perf_counter() >= deadline:
                            break
    else:
        opts = FileOutputStreamOptions(buffer_size=pattern.bs, write_behind=pattern.iodepth)
        data = random.Random(0).randbytes(pattern.bs)
        while time.perf_counter() < deadline:
            f = await ioengine.open_file_dma(path, OpenFlags.WO)
            async with make_file_output_stream(f, opts) as out:
                written = 0
                while written < size and time.perf_counter() < deadline:
                    await out.write(data)
                    written += len(data)
                    ios += 1
            total += written
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return RunResult(ios, total, elapsed, cpu)


async def _run(path: str, size: int, pattern: Pattern, seconds: float, latency: bool, seed: int) -> RunResult:
    if pattern.api == "stream":
        return await _run_stream(path, size, pattern, seconds)
    writes = pattern.rw in ("write", "randwrite", "randrw")
    flags = OpenFlags.RW if writes else OpenFlags.RO
    f = await ioengine.open_file_dma(path, flags)
    try:
        bs = pattern.bs
        nblocks = size // bs
        rng = random.Random(seed)
        stop = False
        count = 0
        lat: list[int] = []
        seq_next = 0

        async def worker(wid: int) -> None:
            # One tight loop per pattern: the benchmark's own Python must not hide ioengine's cost.
            nonlocal count, seq_next
            buf = f.allocate_buffer(bs)
            read, write = f.dma_read, f.dma_write
            mask = _OFFSET_TABLE - 1
            n = 0
            clock = time.perf_counter_ns
            if pattern.random:
                offs, is_read = tables[wid]
                if pattern.rw == "randrw":
                    ops = [read if r else write for r in is_read]
                    mask_op = mask
                else:
                    ops = [read if pattern.rw == "randread" else write]
                    mask_op = 0
                if latency:
                    while not stop:
                        t = clock()
                        await ops[n & mask_op](offs[n & mask], buf)
                        lat.append(clock() - t)
                        n += 1
                elif mask_op == 0:
                    op = ops[0]
                    while not stop:
                        await op(offs[n & mask], buf)
                        n += 1
                else:
                    while not stop:
                        await ops[n & mask_op](offs[n & mask], buf)
                        n += 1
            else:
                op = read if pattern.rw == "read" else write
                end = nblocks * bs
                while not stop:
                    pos = seq_next
                    seq_next = pos + bs if pos + bs < end else 0
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
        tables = [([rng.randrange(nblocks) * bs for _ in range(_OFFSET_TABLE)],
                   [rng.randrange(100) < pattern.rwmixread for _ in range(_OFFSET_TABLE)])
                  if pattern.random else None for _ in range(pattern.iodepth)]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(worker(i)) for i in range(pattern.iodepth)]
        await asyncio.sleep(seconds)
        stop = True
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return RunResult(count, count * bs, elapsed, cpu, lat)
    finally:
        await f.close()


def run_pattern(path: str, pattern: Pattern, seconds: float, options: ReactorOptions | None = None, *,
                latency: bool = False, seed: int = 1) -> RunResult:
    """Run ``pattern`` on ``path`` for ``seconds`` through ioengine (its own loop and reactor)."""
    size = os.path.getsize(path)
    opts = options or ReactorOptions()
    return ioengine.run(_run(path, size, pattern, seconds, latency, seed), **opts.as_dict())


async def _lay_out(path: str, size: int, chunk: int) -> None:
    async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE | OpenFlags.TRUNCATE) as f:
        rnd = random.Random(0)
        bufs = [f.allocate_buffer(chunk) for _ in range(4)]
        for b in bufs:
            b[:] = rnd.randbytes(chunk)  # incompressible, so no device takes a shortcut
        pos = 0
        inflight: set[asyncio.Task] = set()
        i = 0
        while pos < size:
            if len(inflight) >= 4:
                _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            inflight.add(asyncio.ensure_future(f.dma_write(pos, bufs[i % 4])))
            pos += chunk
            i += 1
        await asyncio.gather(*inflight)
        await f.flush()


def ensure_bench_file(path: str, size: int) -> str:
    """Create (or re-create) ``path`` holding ``size`` bytes of random data, written with O_DIRECT."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    chunk = 1 << 20
    if size % chunk:
        raise ValueError(f"benchmark file size must be a multiple of 1 MiB, got {size}")
    ioengine.run(_lay_out(path, size, chunk))
    return path
