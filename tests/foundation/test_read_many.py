"""File.dma_read_many: a batch of reads staged by one C call with one future (IoPath.read_many),
on every backend and loop: data, short reads, checks before staging, kernel errors,
cancellation (buffers pinned until each read's own completion), and the general path (a
throttling disk queue, a batch larger than the ring's room)."""
from __future__ import annotations

import asyncio
import errno
import gc
import os
import weakref

import pytest

import ioengine
from ioengine import OpenFlags as F
from ioengine._iopath import IoFuture

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 256


def _props(directory, read_iops=20000, bw="100M"):
    return (f"disks:\n  - mountpoint: {os.path.abspath(directory)}\n    read_iops: {read_iops}\n"
            f"    read_bandwidth: {bw}\n    write_iops: {read_iops}\n    write_bandwidth: {bw}\n")


def _order(n: int) -> list[int]:
    """n block indices, scattered over the file (some repeated when n > BLOCKS)."""
    return [(i * 37 + 11) % BLOCKS for i in range(n)]


@pytest.mark.parametrize("n", [1, 8, 64, "over-ring"])
def test_read_many_reads_every_block_in_order(run, scratch, n):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        count = r.backend.capacity + 17 if n == "over-ring" else n
        async with await ioengine.open_file_dma(path, F.RO) as f:
            blocks = _order(count)
            bufs = [f.allocate_buffer(BS) for _ in blocks]
            fut = f.read_many_future([(b * BS, buf) for b, buf in zip(blocks, bufs)])
            # one IoFuture for the batch when it fits in the ring; else the general path
            assert isinstance(fut, IoFuture) == (n != "over-ring")
            got = await fut
            assert got == [BS] * count
            for b, buf in zip(blocks, bufs):
                assert bytes(buf) == pattern_block(b, BS), b
            # the coroutine, from a generator of pairs
            got = await f.dma_read_many((b * BS, buf) for b, buf in zip(reversed(blocks), bufs))
            assert got == [BS] * count
            for b, buf in zip(reversed(blocks), bufs):
                assert bytes(buf) == pattern_block(b, BS), b
            assert r.inflight == 0

    run(main(), ring_entries=64)


def test_read_many_short_read_at_eof_as_dma_read(run, scratch):
    path = scratch / "short"
    data = write_pattern_file(path, 4, BS)
    with open(path, "ab") as fh:
        fh.write(b"x" * 100)  # a last, partial block

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            bufs = [f.allocate_buffer(BS) for _ in range(4)]
            got = await f.dma_read_many([(0, bufs[0]), (4 * BS, bufs[1]), (8 * BS, bufs[2]), (3 * BS, bufs[3])])
            single = [await f.dma_read(p, f.allocate_buffer(BS)) for p in (0, 4 * BS, 8 * BS, 3 * BS)]
            assert got == single == [BS, 100, 0, BS]
            assert bytes(bufs[0]) == data[:BS]
            assert bytes(bufs[1][:100]) == b"x" * 100
            assert bytes(bufs[3]) == data[3 * BS:]
            assert await f.dma_read_many([]) == []

    run(main())


def _error_of(coro_fn):
    async def call():
        try:
            await coro_fn()
        except Exception as e:  # noqa: BLE001 - compared by type and text
            return type(e), str(e)
        raise AssertionError("no error")
    return call()


def test_a_bad_request_refuses_the_whole_batch_before_staging(run, scratch):
    """Every request is checked as dma_read checks it (same exception, same text) before any is
    staged: a bad one in the middle leaves nothing in flight."""
    path = scratch / "bad"
    write_pattern_file(path, 16, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            good = [f.allocate_buffer(BS) for _ in range(8)]
            big = f.allocate_buffer(2 * BS)
            da, ma = f.disk_read_dma_alignment // 2, f.memory_dma_alignment // 2
            assert da and ma
            bads = [
                (da, f.allocate_buffer(BS)),  # misaligned position
                (0, memoryview(big)[:BS + da]),  # misaligned length
                (0, memoryview(big)[ma:ma + BS]),  # misaligned address
                (0, bytes(BS)),  # read-only buffer
                (-BS, f.allocate_buffer(BS)),  # negative position
                ("0", f.allocate_buffer(BS)),  # not an int
                (0, 12),  # not a buffer
            ]
            for pos, buf in bads:
                want = await _error_of(lambda: f.dma_read(pos, buf))
                reqs = [(i * BS, g) for i, g in enumerate(good[:4])] + [(pos, buf)] + \
                       [(i * BS, g) for i, g in enumerate(good[4:])]
                got = await _error_of(lambda: f.dma_read_many(reqs))
                assert got == want, (pos, got, want)
                assert r.inflight == 0 and r._path.staged == 0
                assert all(g.exports == 0 for g in good)
            with pytest.raises(ValueError):
                await f.dma_read_many([(0, good[0], 1)])
            assert r.inflight == 0
        want = await _error_of(lambda: f.dma_read(0, good[0]))
        assert want[0] is ioengine.ClosedFileError
        assert await _error_of(lambda: f.dma_read_many([(0, good[0])])) == want

    run(main())


def test_kernel_error_raised_once_the_whole_batch_completed(run, scratch):
    path = scratch / "wo"
    write_pattern_file(path, 16, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.WO) as wo:
            bufs = [wo.allocate_buffer(BS) for _ in range(8)]
            with pytest.raises(OSError) as ei:
                await wo.dma_read_many([(i * BS, b) for i, b in enumerate(bufs)])
            e = ei.value
            assert e.errno == errno.EBADF, e
            s = str(e)
            assert "dma_read" in s and str(path) in s, s
            assert errno.errorcode[errno.EBADF] in s or os.strerror(errno.EBADF) in s, s
            # the same construction as dma_read's error
            with pytest.raises(OSError) as ei1:
                await wo.dma_read(0, bufs[0])
            assert type(ei1.value) is type(e) and str(ei1.value) == s
            assert r.inflight == 0
            assert all(b.exports == 0 for b in bufs)
        async with await ioengine.open_file_dma(path, F.RO) as ro:  # the reactor is fine
            assert await ro.dma_read_many([(0, bufs[0])]) == [BS]

    run(main())


def _pinned(refs) -> list:
    live = [ref() for ref in refs]
    pinned = [b for b in live if b is not None and b.exports > 0]
    for b in pinned:
        assert not b.freed, "a buffer was freed while the kernel may write into it"
    return pinned


def test_cancelled_batch_keeps_buffers_pinned_until_each_completion(run, scratch):
    """Cancelling the batch's future does not withdraw its reads: each buffer stays pinned (and
    alive, unfreed) until its own read completes; the reactor drains; nothing is reported."""
    path = scratch / "cancel"
    write_pattern_file(path, BLOCKS, BS)
    N = 64

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f, \
                await ioengine.open_file_dma(path, F.WO) as wo:
            bufs = [f.allocate_buffer(BS) for _ in range(N)]
            refs = [weakref.ref(b) for b in bufs]
            kept = {i: bufs[i] for i in range(0, N, 5)}
            fut = f.read_many_future([(i * BS, b) for i, b in enumerate(bufs)])
            assert isinstance(fut, IoFuture)
            failing = wo.read_many_future([(i * BS, f.allocate_buffer(BS)) for i in range(4)])  # EBADF
            assert r.inflight == N + 4  # nothing went to the kernel yet (submit_batch is large)
            fut.cancel()
            failing.cancel()
            for i in range(N):
                if i not in kept and i % 2:
                    bufs[i].release()
            del bufs
            gc.collect()
            assert len(_pinned(refs)) == N
            # a task awaiting a batch, cancelled while the batch is in the kernel
            tb = [f.allocate_buffer(BS) for _ in range(8)]
            task = asyncio.create_task(f.dma_read_many([(i * BS, b) for i, b in enumerate(tb)]))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert len(_pinned(refs)) >= r.inflight - 4 - len(tb)  # the other batches' reads may be in flight
            await r.drain()
            assert r.inflight == 0
            gc.collect()
            alive = [i for i, ref in enumerate(refs) if ref() is not None and i not in kept]
            assert not alive, f"{len(alive)} buffers outlive their reads, e.g. {alive[:5]}"
            for i, b in kept.items():
                assert not b.freed and b.exports == 0
                assert bytes(b) == pattern_block(i, BS), i
            assert all(b.exports == 0 for b in tb)
            assert fut.cancelled() and failing.cancelled()
            del fut, failing, task
            gc.collect()
            assert not [o for o in gc.get_objects() if type(o).__name__ == "ReadBatch"]  # none outlives its batch

    run(main(), submit_batch=1 << 20)


def test_throttling_queue_takes_the_general_path_with_the_same_results(run, scratch):
    path = scratch / "throttled"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            for n in (1, 8, 64):
                blocks = _order(n)
                bufs = [f.allocate_buffer(BS) for _ in blocks]
                fut = f.read_many_future([(b * BS, buf) for b, buf in zip(blocks, bufs)])
                assert not isinstance(fut, IoFuture)  # the throttling queue: Python's path
                assert await fut == [BS] * n
                for b, buf in zip(blocks, bufs):
                    assert bytes(buf) == pattern_block(b, BS), b
            bad = f.disk_read_dma_alignment // 2
            want = await _error_of(lambda: f.dma_read(bad, bufs[0]))
            assert await _error_of(lambda: f.dma_read_many([(0, bufs[1]), (bad, bufs[0])])) == want
            assert r.inflight == 0
        async with await ioengine.open_file_dma(path, F.WO) as wo:
            with pytest.raises(OSError) as ei:
                await wo.dma_read_many([(0, bufs[0]), (BS, bufs[1])])
            assert ei.value.errno == errno.EBADF and "dma_read" in str(ei.value) and str(path) in str(ei.value)
        m = ioengine.metrics()[0]["disks"]
        assert any(d["queue"]["throttling"] for d in m.values())

    run(main(), io_properties=_props(scratch))
