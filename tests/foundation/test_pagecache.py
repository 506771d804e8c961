"""The page cache's fast path (ioengine.pagecache): a buffered file's reads and writes served at
the call when the kernel can do them without waiting, the ring otherwise; on every backend and
loop, on the local disk, the data checked against plain os.pread."""
from __future__ import annotations

import asyncio
import errno
import os

import pytest

import ioengine
from ioengine import FileOpenOptions
from ioengine import OpenFlags as F
from ioengine.backends.base import OP_READ
from ioengine.fstream import make_file_input_stream
from ioengine.pagecache import MAX_SKIP, TURN_REQUESTS
from ioengine.testing import FaultRule, inject_faults, remove_faults

from foundation_util import read_file

BUFFERED = FileOpenOptions(buffered=True)
BLOCKING = FileOpenOptions(buffered=True, blocking_buffered_writes=True)


def _cache(path, data: bytes) -> None:
    """``path`` holding ``data``, all of it in the page cache (just written, buffered)."""
    with open(path, "wb") as f:
        f.write(data)


def _nowait_buffered_writes(path) -> bool:
    """Whether this filesystem takes a buffered write with RWF_NOWAIT (ext4 does not)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwritev(fd, [b"\0"], 0, os.RWF_NOWAIT)
        return True
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return False
        return True  # EAGAIN: it would, had it not had to wait
    finally:
        os.close(fd)


def test_a_cached_read_is_served_at_the_call(run, scratch):
    path = scratch / "hot"
    data = os.urandom(64 << 10)
    _cache(path, data)

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            buf = f.allocate_buffer(4096)
            try:
                for i in range(16):
                    assert await f.dma_read(i * 4096, buf) == 4096
                    assert bytes(buf) == data[i * 4096:(i + 1) * 4096]
                # any offset: a buffered file has alignments of 1
                assert await f.dma_read(1001, buf) == 4096
                assert bytes(buf) == data[1001:5097]
            finally:
                buf.release()
        assert cache.reads == 17 and cache.misses == 0

    run(main())


def test_a_read_the_cache_does_not_hold_takes_the_ring(run, scratch, monkeypatch):
    """A miss (EAGAIN) goes through the ring; misses in a row back off. Which blocks the kernel
    holds is its own affair (large folios, readahead), so the cache's answer is made EAGAIN for
    every try here; the reads themselves are real, through the ring."""
    import ioengine.pagecache as pagecache

    path = scratch / "cold"
    data = os.urandom(256 << 10)
    _cache(path, data)
    real = pagecache.lib
    tries = 0

    class Cold:
        def ie_rw_now(self, fd, write, addr, n, pos, flags):
            nonlocal tries
            tries += 1
            assert flags == os.RWF_NOWAIT
            return -errno.EAGAIN

    monkeypatch.setattr(pagecache, "lib", Cold())
    monkeypatch.setattr(pagecache, "NATIVE", False)  # the Python path, where the spy sits

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            buf = f.allocate_buffer(4096)
            try:
                for i in range(32):
                    assert await f.dma_read(i * 4096, buf) == 4096
                    assert bytes(buf) == data[i * 4096:(i + 1) * 4096]
                # a try at reads 1, 3, 7, 15 and 31 only: 1, 3, 7, 15 … skipped after each miss
                assert cache.reads == 0 and cache.misses == tries, (cache.misses, tries)
                assert tries == 5, tries
                monkeypatch.setattr(pagecache, "lib", real)
                for _ in range(MAX_SKIP + 1):  # past the longest backoff, a hit is served again
                    assert await f.dma_read(0, buf) == 4096
                assert cache.reads >= 1
            finally:
                buf.release()

    run(main())



@pytest.mark.parametrize("native", [True, False])
def test_misses_back_off_in_c_as_in_python(run, scratch, monkeypatch, native):
    """dma_read's hits are served in C (native/filemethods.c) or, as read_future's, by the Python
    CachedSubmit.try_read: the same books either way. Reads past the end of the file miss every
    time (a short read of 0: the ring says what it is), deterministically: tries at reads 1, 3,
    7, 15 and 31 of 32, each miss doubling the run through the ring; then cached reads are served."""
    import ioengine.pagecache as pagecache

    monkeypatch.setattr(pagecache, "NATIVE", native)
    path = scratch / "eof"
    data = os.urandom(16 << 10)
    _cache(path, data)

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            assert f._page_cache._native is native
            buf = f.allocate_buffer(4096)
            try:
                for _ in range(32):
                    assert await f.dma_read(1 << 20, buf) == 0
                assert cache.misses == 5 and cache.reads == 0, (cache.misses, cache.reads)
                for _ in range(MAX_SKIP + 4):  # past the longest backoff, the hits are served again
                    assert await f.dma_read(4096, buf) == 4096
                    assert bytes(buf) == data[4096:8192]
                assert cache.reads >= 3 and cache.misses == 5
                # the budget and its refill: a served read is counted against this turn's
                assert cache.requests_left < pagecache.TURN_REQUESTS
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                assert cache.requests_left == pagecache.TURN_REQUESTS
            finally:
                buf.release()

    run(main())


def test_a_hit_served_in_c_is_an_awaitable_for_create_task(run, scratch):
    """What dma_read returns for a hit is what it returns for the ring: awaitable, and a task can
    be made of it (asyncio.create_task wants a coroutine)."""
    path = scratch / "task"
    data = os.urandom(8192)
    _cache(path, data)

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            buf = f.allocate_buffer(4096)
            try:
                before = cache.reads
                assert await asyncio.create_task(f.dma_read(4096, buf)) == 4096
                assert bytes(buf) == data[4096:] and cache.reads == before + 1
                aw = f.dma_read(0, buf)
                assert cache.reads == before + 2  # served at the call, before the await
                assert await aw == 4096 and bytes(buf) == data[:4096]
            finally:
                buf.release()

    run(main())


def test_short_read_at_the_end_of_the_file(run, scratch):
    path = scratch / "short"
    data = os.urandom(6000)
    _cache(path, data)

    async def main():
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            buf = f.allocate_buffer(8192)
            try:
                for _ in range(3):  # the first tries the cache, the next back off: the same answer
                    assert await f.dma_read(0, buf) == 6000
                    assert bytes(buf[:6000]) == data
                assert await f.dma_read(6000, buf) == 0
            finally:
                buf.release()

    run(main())


def test_reading_the_cache_in_a_loop_lets_the_loop_turn(run, scratch):
    """A task that only hits the cache still yields: timers and other tasks run."""
    path = scratch / "spin"
    _cache(path, os.urandom(64 << 10))

    async def main():
        cache = ioengine.get_reactor().page_cache
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        reads = 20 * TURN_REQUESTS
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            buf = f.allocate_buffer(4096)
            try:
                for i in range(reads):
                    await f.dma_read((i % 16) * 4096, buf)
            finally:
                buf.release()
        stop = True
        await t
        assert ticks >= reads // TURN_REQUESTS - 1
        assert 0 < cache.reads < reads  # at most a turn's budget each turn: the rest took the ring

    run(main())


@pytest.mark.parametrize("native", [True, False])
def test_blocking_buffered_writes_are_made_at_the_call(run, scratch, monkeypatch, native):
    import ioengine.pagecache as pagecache

    monkeypatch.setattr(pagecache, "NATIVE", native)  # C (dma_write) and the Python reference
    path = scratch / "w"
    _cache(path, b"")

    async def main():
        cache = ioengine.get_reactor().page_cache
        expected = bytearray()
        async with await ioengine.open_file_dma(path, F.RW, BLOCKING) as f:
            buf = f.allocate_buffer(4096)
            try:
                for i in range(32):  # appends: the logical size follows each
                    buf[:] = bytes([i]) * 4096
                    assert await f.dma_write(i * 4096, buf) == 4096
                    expected += bytes(buf)
                    assert f.logical_size == len(expected)
                buf[:] = b"z" * 4096
                assert await f.dma_write(100, buf) == 4096  # any offset, over what is there
                expected[100:4196] = b"z" * 4096
                assert await f.size() == len(expected)
            finally:
                buf.release()
        assert cache.writes == 33
        assert read_file(path) == bytes(expected)

    run(main())


@pytest.mark.parametrize("native", [True, False])
def test_buffered_writes_wait_for_the_ring_unless_the_file_asks(run, scratch, monkeypatch, native):
    """Without blocking_buffered_writes, a filesystem that cannot take a buffered write without
    blocking (ext4) gets every write through the ring; one that can takes them at the call."""
    import ioengine.pagecache as pagecache

    monkeypatch.setattr(pagecache, "NATIVE", native)
    path = scratch / "w2"
    _cache(path, b"")
    nowait = _nowait_buffered_writes(path)

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RW, BUFFERED) as f:
            buf = f.allocate_buffer(4096)
            try:
                buf[:] = b"q" * 4096
                for i in range(8):
                    assert await f.dma_write(i * 4096, buf) == 4096
            finally:
                buf.release()
        if not nowait:
            assert cache.writes == 0
        assert read_file(path) == b"q" * 32768

    run(main())


def test_a_dsync_file_keeps_its_writes_on_the_ring(run, scratch):
    """An O_DSYNC write waits for the disk: never made at the call, even when the file asks."""
    path = scratch / "dsync"
    _cache(path, os.urandom(8192))

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RW | F.DSYNC, BLOCKING) as f:
            buf = f.allocate_buffer(4096)
            try:
                buf[:] = b"d" * 4096
                assert await f.dma_write(0, buf) == 4096
                assert await f.dma_read(4096, buf) == 4096  # reads still are
            finally:
                buf.release()
        assert (cache.writes, cache.reads) == (0, 1)
        assert read_file(path)[:4096] == b"d" * 4096

    run(main())


def test_a_sloppy_size_file_keeps_its_writes_on_the_ring(run, scratch):
    """Writes whose size books say wait (sloppy growth, a size barrier) are not served at the call."""
    path = scratch / "sloppy"

    async def main():
        cache = ioengine.get_reactor().page_cache
        opts = FileOpenOptions(buffered=True, blocking_buffered_writes=True, sloppy_size=True)
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE, opts) as f:
            buf = f.allocate_buffer(4096)
            try:
                buf[:] = b"s" * 4096
                for i in range(4):
                    assert await f.dma_write(i * 4096, buf) == 4096
            finally:
                buf.release()
        assert cache.writes == 0
        assert read_file(path) == b"s" * 16384  # cut back to the written size on close

    run(main())


def test_direct_files_never_take_the_path(run, scratch):
    path = scratch / "direct"
    _cache(path, os.urandom(64 << 10))

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RW) as f:
            assert f.direct
            buf = f.allocate_buffer(4096)
            try:
                for i in range(8):
                    await f.dma_read(i * 4096, buf)
                    await f.dma_write(i * 4096, buf)
            finally:
                buf.release()
        assert (cache.reads, cache.writes, cache.misses) == (0, 0, 0)

    run(main())


def test_bad_input_is_refused_as_on_the_ring(run, scratch):
    path = scratch / "bad"
    _cache(path, os.urandom(8192))

    async def main():
        async with await ioengine.open_file_dma(path, F.RW, BLOCKING) as f:
            buf = f.allocate_buffer(4096)
            with pytest.raises(ValueError, match="outside"):
                await f.dma_read(-4096, buf)
            with pytest.raises(ValueError, match="outside"):
                await f.dma_write(-1, buf)
            buf.release()
            with pytest.raises(ValueError, match="released"):
                await f.dma_read(0, buf)
            with pytest.raises(ValueError, match="released"):
                await f.dma_write(0, buf)
        async with await ioengine.open_file_dma(path, F.RO, BLOCKING) as f:
            buf = f.allocate_buffer(4096)
            try:
                # a read-only file: the kernel's EBADF, reported by the ring's path as for any write
                with pytest.raises(OSError) as e:
                    await f.dma_write(0, buf)
                assert e.value.errno == errno.EBADF and "dma_write" in str(e.value)
                assert await f.dma_read(0, buf) == 4096  # the reactor goes on
            finally:
                buf.release()

    run(main())


def test_a_fault_injector_sees_every_request(run, scratch):
    """Requests served at the call would pass a fault injector by: it turns the path off."""
    path = scratch / "faults"
    _cache(path, os.urandom(64 << 10))

    async def main():
        reactor = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            buf = f.allocate_buffer(4096)
            try:
                assert await f.dma_read(0, buf) == 4096
                assert reactor.page_cache.reads == 1
                inject_faults(reactor, [FaultRule(OP_READ, errno=errno.EIO, when="submit")])
                with pytest.raises(OSError) as e:
                    await f.dma_read(0, buf)
                assert e.value.errno == errno.EIO
                remove_faults(reactor)
                for _ in range(100):
                    if reactor.page_cache.enabled:
                        break
                    await asyncio.sleep(0)
                assert await f.dma_read(0, buf) == 4096
                assert reactor.page_cache.reads == 2
            finally:
                buf.release()

    run(main())


def test_the_buffer_is_pinned_during_the_call(run, scratch, monkeypatch):
    """The GIL is dropped around the system call: an export pins the buffer's memory meanwhile,
    so a release() from another thread waits for it, as for a request in the ring."""
    import ioengine.pagecache as pagecache

    path = scratch / "pin"
    _cache(path, os.urandom(8192))
    real = pagecache.lib
    exports: list[int] = []
    held: list = []

    class Spy:
        def ie_rw_now(self, *args):
            exports.append(held[0].exports)
            return real.ie_rw_now(*args)

    monkeypatch.setattr(pagecache, "lib", Spy())
    monkeypatch.setattr(pagecache, "NATIVE", False)  # the Python path (C pins with an export too)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW, BLOCKING) as f:
            buf = f.allocate_buffer(4096)
            held.append(buf)
            try:
                before = buf.exports
                assert await f.dma_read(0, buf) == 4096
                assert await f.dma_write(4096, buf) == 4096
                assert exports and all(e > before for e in exports)
                assert buf.exports == before
            finally:
                buf.release()

    run(main())


def test_an_input_stream_reads_the_cache_at_the_call(run, scratch):
    """File.read_future (the streams' read-ahead) takes the page cache first too; a read it does
    not serve (past the cached part, the file's end) takes the ring as before."""
    path = scratch / "stream"
    data = os.urandom(1 << 20)
    _cache(path, data)

    async def main():
        cache = ioengine.get_reactor().page_cache
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            out = bytearray()
            async with make_file_input_stream(f, 1000) as stream:
                async for chunk in stream:
                    out += chunk
            assert bytes(out) == data[1000:]
        assert cache.reads > 0

    run(main())
