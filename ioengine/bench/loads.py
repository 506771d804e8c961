"""The scheduler benchmarks' loads on one shard: a closed loop of requests back to back, and reads
paced at a rate whatever their latency (ioengine.bench.sched runs them on one shard,
ioengine.bench.sched_smp on each of several)."""
from __future__ import annotations

import asyncio
import random
import time

import ioengine
from ioengine import IoClass

BLOCK = 4096
WRITE_BS = 128 << 10
#: (b)'s writer: backlogged 128 KiB sequential writes, this many in flight.
ISOLATION_WRITE_DEPTH = 8


async def saturate(f: ioengine.File, seconds: float, depth: int, bs: int, write: bool, sequential: bool,
                    io_class: IoClass | None = None) -> int:
    """Closed loop: ``depth`` workers back to back; returns the requests completed."""
    stop = False
    count = 0
    nblocks = (await f.size()) // bs
    cursor = [0]

    async def worker(seed: int) -> None:
        nonlocal count
        rnd = random.Random(seed)
        buf = f.allocate_buffer(bs)
        op = f.dma_write if write else f.dma_read
        n = 0
        while not stop:
            if sequential:
                pos = cursor[0] * bs
                cursor[0] = (cursor[0] + 1) % nblocks
            else:
                pos = rnd.randrange(nblocks) * bs
            await op(pos, buf, io_class)
            n += 1
        count += n
        buf.release()

    tasks = [asyncio.create_task(worker(i)) for i in range(depth)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    return count


async def open_loop_reads(f: ioengine.File, rate: float, seconds: float, io_class: IoClass | None,
                           workers: int = 64) -> list[int]:
    """Reads issued at ``rate`` per second whatever the latency; latencies in ns.

    Paced workers share one schedule (request k is due at start + k/rate): cheaper than a task
    per request, so the generator itself does not saturate the CPU. ``workers`` bounds the
    requests outstanding; the result says how many of the scheduled ones were issued.
    """
    nblocks = (await f.size()) // BLOCK
    rnd = random.Random(7)
    offs = [rnd.randrange(nblocks) * BLOCK for _ in range(8192)]
    lat: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    end = start + seconds
    nxt = [0]

    async def worker() -> None:
        buf = f.allocate_buffer(BLOCK)
        read = f.dma_read
        while True:
            k = nxt[0]
            nxt[0] = k + 1
            due = start + k / rate
            if due >= end:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t = clock()
            await read(offs[k & 8191], buf, io_class)
            lat.append(clock() - t)
        buf.release()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return lat


def pct(xs: list[int], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100))] / 1000 if s else float("nan")
