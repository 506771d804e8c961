"""ReactorOptions.io_wakeup_budget: completions of competing io classes wake their tasks by
shares (iosched.WakeupQueue), real I/O on every backend and loop. What the shares achieve on
the real disk is a benchmark (`python scripts/shares.py --wakeup-budget 8`), not a test; here:
nothing is lost, delayed forever, or freed early while a wake-up is held."""
from __future__ import annotations

import asyncio
import random
import time

import pytest

import ioengine
from ioengine import OpenFlags as F

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 256
PROPS = ("disks:\n  - mountpoint: {mp}\n    read_iops: 1000000\n    read_bandwidth: 4000000000\n"
         "    write_iops: 1000000\n    write_bandwidth: 4000000000\n")


async def readers(f, classes, tasks, reads, seed=1):
    """``tasks`` tasks per class, each reading ``reads`` random blocks and checking them."""
    counts = {c.name: 0 for c in classes}

    async def one(cls, k):
        rnd = random.Random(seed * 1000 + k)
        buf = f.allocate_buffer(BS)
        for _ in range(reads):
            b = rnd.randrange(BLOCKS)
            assert await f.dma_read(b * BS, buf, io_class=cls) == BS
            assert bytes(buf) == pattern_block(b, BS)
            counts[cls.name] += 1

    await asyncio.gather(*(one(c, i * 100 + k) for i, c in enumerate(classes) for k in range(tasks)))
    return counts


@pytest.mark.parametrize("props", [False, True], ids=["unthrottled", "io_properties"])
def test_competing_classes_complete_everything_with_wakeups_held(run, scratch, props):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    classes = [ioengine.IoClass("wb_hi", 400), ioengine.IoClass("wb_lo", 100)]

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            # The budget holds wake-ups only when one reap brings both classes' completions; on
            # a host that completes them one at a time that may take more than one pass.
            for attempt in range(50):
                counts = await readers(f, classes, 16, 40, seed=1 + attempt)
                assert counts == {"wb_hi": 16 * 40, "wb_lo": 16 * 40}
                assert r.inflight == 0
                if r.held_wakeups:
                    break
        assert r.inflight == 0 and r.held_wakeups > 0  # the budget was in force, and let go
        return r.held_wakeups

    # (without the in-disk split: with it, the small class's excess waits in the disk queue,
    # whose completions the fair queue has already ordered, and the budget has less to hold)
    opts = {"io_properties": PROPS.format(mp=scratch), "io_share_in_disk": False} if props else {}
    run(main(), io_wakeup_budget=1, **opts)


def test_a_class_alone_is_never_held(run, scratch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            counts = await readers(f, [ioengine.IoClass("wb_alone", 200)], 32, 30)
        assert counts == {"wb_alone": 32 * 30}
        assert r.held_wakeups == 0

    run(main(), io_wakeup_budget=1)


def test_cancelled_tasks_with_wakeups_held_lose_nothing(run, scratch):
    """Tasks cancelled while their completions wait for a wake-up: each buffer stays with its
    request until the completion is delivered, the reactor drains, and other tasks go on."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    classes = [ioengine.IoClass("wb_c_hi", 400), ioengine.IoClass("wb_c_lo", 100)]

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            victims = [asyncio.ensure_future(readers(f, classes[1:], 8, 10_000, seed=7)) for _ in range(2)]
            for _ in range(200):  # until wake-ups are held
                await asyncio.sleep(0)
                if r.held_wakeups:
                    break
            # Wake-ups are held only when one reap brings both classes' completions: on a host
            # that completes them one at a time a pass of the survivors may bring none, so
            # passes go on (each checked) until one is held, the victims reading throughout.
            passes = 0
            survivors = asyncio.ensure_future(readers(f, classes, 8, 30, seed=9))
            while not r.held_wakeups:
                if survivors.done():
                    assert survivors.result() == {"wb_c_hi": 8 * 30, "wb_c_lo": 8 * 30}
                    passes += 1
                    assert passes < 50, "no wake-up was ever held"
                    survivors = asyncio.ensure_future(readers(f, classes, 8, 30, seed=9 + passes))
                await asyncio.sleep(0)
            for v in victims:
                v.cancel()
            for v in victims:
                with pytest.raises(asyncio.CancelledError):
                    await v
            counts = await survivors
            await r.drain()
            assert counts == {"wb_c_hi": 8 * 30, "wb_c_lo": 8 * 30}
            assert r.inflight == 0

    run(main(), io_wakeup_budget=1)


def test_kernel_errors_are_delivered_through_held_wakeups(run, scratch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    classes = [ioengine.IoClass("wb_e_hi", 400), ioengine.IoClass("wb_e_lo", 100)]

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as ro, await ioengine.open_file_dma(path, F.WO) as wo:
            bufs = [ro.allocate_buffer(BS) for _ in range(64)]
            futs = []
            for i, b in enumerate(bufs):
                cls = classes[i % 2]
                # every third request is refused by the kernel (EBADF: a read of a write-only file)
                futs.append((wo if i % 3 == 0 else ro).dma_read(i * BS, b, io_class=cls))
            res = await asyncio.gather(*futs, return_exceptions=True)
            for i, r in enumerate(res):
                if i % 3 == 0:
                    assert isinstance(r, OSError) and "dma_read" in str(r) and str(path) in str(r), r
                else:
                    assert r == BS and bytes(bufs[i]) == pattern_block(i, BS)
            assert await ro.dma_read(0, bufs[0]) == BS  # the reactor goes on

    run(main(), io_wakeup_budget=1)


def test_budget_option_is_checked():
    with pytest.raises(ValueError, match="io_wakeup_budget"):
        ioengine.ReactorOptions(io_wakeup_budget=-1)
    with pytest.raises(TypeError, match="io_wakeup_budget"):
        ioengine.ReactorOptions(io_wakeup_budget=1.5)  # type: ignore[arg-type]


def test_run_ends_with_wakeups_held(run, scratch):
    """main() returns while completions wait for their wake-up: run() still drains everything
    (no wait for completions that already came), and the caller's buffers hold the data."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    classes = [ioengine.IoClass("wb_r_hi", 400), ioengine.IoClass("wb_r_lo", 100)]
    bufs = [ioengine.allocate_aligned_buffer(BS) for _ in range(128)]

    async def main():
        r = ioengine.get_reactor()
        f = await ioengine.open_file_dma(path, F.RO)
        for i, b in enumerate(bufs):
            asyncio.ensure_future(f.dma_read(i * BS, b, io_class=classes[i % 2]))
        await asyncio.sleep(0)  # the tasks stage their reads
        await asyncio.sleep(0)  # the flush submits the rest
        # Without yielding, let the reads complete, so that they are reaped in one mixed batch
        # and the budget holds some back (reaped one by one, as a loaded host may, none would be).
        time.sleep(0.05)
        deadline = time.monotonic() + 10
        while not r.held_wakeups:
            assert time.monotonic() < deadline, "no wake-up was ever held"
            await asyncio.sleep(0)
        return r

    r = run(main(), io_wakeup_budget=1)
    assert r.closed and r.inflight == 0
    assert all(bytes(b) == pattern_block(i, BS) for i, b in enumerate(bufs))
