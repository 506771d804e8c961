"""Injected faults (ioengine.testing) reach exactly their awaiting caller, and nothing else breaks.

Every test runs on every backend with real files (the injector only changes results on their way
back, or keeps a request from the kernel). After each: the other requests completed normally, a
later plain read works, nothing is in flight, and asyncio reported nothing (no "exception was
never retrieved").

What the reactor does with EAGAIN and EINTR results: it does not retry them; they reach the
caller as errors like any other (InterruptedError / BlockingIOError, subclasses of OSError).
"""
from __future__ import annotations

import asyncio
import errno
import os

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)
from ioengine.testing import (
    OP_FSYNC,
    OP_READ,
    OP_READV,
    OP_WRITE,
    OP_WRITEV,
    FaultInjector,
    FaultRule,
    faults,
    inject_faults,
    remove_faults,
)

from reliability_util import BLOCK, block, numbered, settle, watch_loop

RW = ioengine.OpenFlags.RW
ERRNOS = [errno.EIO, errno.ENOSPC, errno.EAGAIN, errno.EINTR]
N = 8


@pytest.fixture
def data(scratch):
    path = scratch / "numbered.dat"
    path.write_bytes(numbered(64))
    return path


def _is_error(e: BaseException, err: int, op: str, path) -> None:
    assert isinstance(e, OSError), repr(e)
    assert e.errno == err, e
    assert op in str(e), e
    assert errno.errorcode[err] in str(e), e
    assert e.filename == str(path), (e.filename, path)


async def _healthy(f, reports: list) -> None:
    """The reactor still works, holds nothing, and asyncio reported nothing."""
    r = ioengine.get_reactor()
    assert not isinstance(r.backend, FaultInjector)
    buf = f.allocate_buffer(BLOCK)
    assert await f.dma_read(5 * BLOCK, buf) == BLOCK
    assert bytes(buf) == block(5)
    buf.release()
    # Reads a closed stream abandoned may still be running (the thread pool): they complete.
    await asyncio.wait_for(r.drain(), 60)
    await settle()
    assert r.inflight == 0
    assert reports == []


@pytest.mark.parametrize("when", ["complete", "submit"])
@pytest.mark.parametrize("err", ERRNOS, ids=[errno.errorcode[e] for e in ERRNOS])
def test_dma_read_error(run, data, reports, err, when):
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        bufs = [f.allocate_buffer(BLOCK) for _ in range(N)]
        async with faults([FaultRule(OP_READ, fd=f.fileno(), errno=err, when=when, nth=4)]) as inj:
            res = await asyncio.gather(*(f.dma_read(i * BLOCK, bufs[i]) for i in range(N)), return_exceptions=True)
        failed = [i for i, x in enumerate(res) if isinstance(x, BaseException)]
        assert len(failed) == 1, res
        _is_error(res[failed[0]], err, "dma_read", data)
        for i, x in enumerate(res):
            if i not in failed:
                assert x == BLOCK and bytes(bufs[i]) == block(i)
        assert [e[0] for e in inj.log] == ["error" if when == "complete" else "error-submit"]
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


@pytest.mark.parametrize("when", ["complete", "submit"])
@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_dma_write_error(run, data, reports, err, when):
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        bufs = []
        for i in range(N):
            b = f.allocate_buffer(BLOCK)
            b[:] = block(100 + i)
            bufs.append(b)
        async with faults([FaultRule(OP_WRITE, errno=err, when=when, nth=3)]):
            res = await asyncio.gather(*(f.dma_write((8 + i) * BLOCK, bufs[i]) for i in range(N)),
                                       return_exceptions=True)
        failed = [i for i, x in enumerate(res) if isinstance(x, BaseException)]
        assert len(failed) == 1, res
        _is_error(res[failed[0]], err, "dma_write", data)
        await f.flush()
        with open(data, "rb") as g:
            for i, x in enumerate(res):
                if i in failed:
                    # "complete": the kernel did write it, the caller was told otherwise;
                    # "submit": it never reached the kernel.
                    want = block(100 + i) if when == "complete" else block(8 + i)
                else:
                    assert x == BLOCK
                    want = block(100 + i)
                assert os.pread(g.fileno(), BLOCK, (8 + i) * BLOCK) == want, i
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


@pytest.mark.parametrize("when", ["complete", "submit"])
def test_vectored_errors(run, data, reports, when):
    """dma_readv and dma_writev: the failing one raises, the others (and plain I/O beside them) succeed."""
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        rules = [FaultRule(OP_READV, errno=errno.EIO, when=when, nth=2),
                 FaultRule(OP_WRITEV, errno=errno.ENOSPC, when=when, nth=1)]
        rbufs = [[f.allocate_buffer(BLOCK) for _ in range(2)] for _ in range(3)]
        wbufs = [f.allocate_buffer(BLOCK) for _ in range(2)]
        for b in wbufs:
            b[:] = block(999)
        async with faults(rules):
            res = await asyncio.gather(*(f.dma_readv(2 * i * BLOCK, rbufs[i]) for i in range(3)),
                                       f.dma_writev(40 * BLOCK, wbufs), f.dma_read(6 * BLOCK, f.allocate_buffer(BLOCK)),
                                       return_exceptions=True)
        assert res[0] == res[2] == 2 * BLOCK and res[4] == BLOCK, res
        _is_error(res[1], errno.EIO, "dma_readv", data)
        _is_error(res[3], errno.ENOSPC, "dma_writev", data)
        for i in (0, 2):
            assert bytes(rbufs[i][0]) + bytes(rbufs[i][1]) == block(2 * i) + block(2 * i + 1)
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
def test_flush_error(run, backend, data, reports, err):
    if backend == "linux-aio":
        pytest.skip("linux-aio's fdatasync runs on the thread pool (ext4/xfs refuse IOCB_CMD_FDSYNC): "
                    "no record reaches the backend to fail")

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        b = f.allocate_buffer(BLOCK)
        b[:] = block(7)
        async with faults([FaultRule(OP_FSYNC, errno=err, nth=1)]) as inj:
            w = asyncio.ensure_future(f.dma_write(7 * BLOCK, b))
            with pytest.raises(OSError) as ei:
                await f.flush()
            assert await w == BLOCK
        _is_error(ei.value, err, "fdatasync", data)
        assert inj.rules == [] and [e[1] for e in inj.log] == ["fsync"]
        await f.flush()  # the next one goes through
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


@pytest.mark.parametrize("when", ["complete", "submit"])
@pytest.mark.parametrize("err", ERRNOS, ids=[errno.errorcode[e] for e in ERRNOS])
def test_output_stream_write_error(run, scratch, data, reports, err, when):
    """A background write of an output stream fails: the writer gets it at its next call (write,
    flush or close), naming the path and errno; the stream refuses more; nothing is logged."""
    out = scratch / "out.dat"

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(out, RW | ioengine.OpenFlags.CREATE | ioengine.OpenFlags.TRUNCATE)
        s = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=64 * 1024, write_behind=3,
                                                               preallocation_size=0))
        caught = []
        async with faults([FaultRule(OP_WRITE, fd=f.fileno(), errno=err, when=when, nth=3)]):
            try:
                for i in range(16):
                    await s.write(block(i) * 16)
                await s.flush()
            except OSError as e:
                caught.append(e)
            try:
                await s.close()
            except OSError as e:
                caught.append(e)
        assert caught, "the failed background write never reached the writer"
        for e in caught:
            _is_error(e, err, "", out)
            assert "dma_write" in str(e) or "dma_write" in str(e.__cause__), e
        g = await ioengine.open_file_dma(data, RW)
        await _healthy(g, reports)
        await g.close()

    run(body())
    assert reports == []


@pytest.mark.parametrize("when", ["complete", "submit"])
@pytest.mark.parametrize("err", ERRNOS, ids=[errno.errorcode[e] for e in ERRNOS])
def test_input_stream_read_error(run, data, reports, err, when):
    """A read-ahead read fails: the chunks before it arrive intact, then the read that needs it
    raises; read-ahead beyond it leaves no unretrieved exception behind."""
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        s = make_file_input_stream(f, 0, None, FileInputStreamOptions(buffer_size=4 * BLOCK, read_ahead=4))
        got = b""
        async with faults([FaultRule(OP_READ, fd=f.fileno(), errno=err, when=when, nth=3)]):
            with pytest.raises(OSError) as ei:
                while True:
                    chunk = await s.read()
                    if not chunk:
                        break
                    got += bytes(chunk)
            await s.close()
        _is_error(ei.value, err, "dma_read", data)
        assert got == numbered(8)  # the two chunks before the failed one
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


def test_short_read(run, data, reports):
    """A short read gives the short count to dma_read; dma_read_exactly says ShortReadError."""
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        b = f.allocate_buffer(4 * BLOCK)
        async with faults([FaultRule(OP_READ, short=1536, times=2)]) as inj:
            assert await f.dma_read(0, b) == 1536
            assert bytes(b[:1536]) == block(0)[:1536]
            with pytest.raises(ioengine.ShortReadError):
                await f.dma_read_exactly(0, 2 * BLOCK)
        assert [e[0] for e in inj.log] == ["short", "short"]
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


def test_short_read_in_stream_leaves_no_gap(run, data, reports):
    """A short read in the middle of the file (read-ahead already past it): the stream goes on
    from where the short read ended and hands out the whole file, in order, without a gap."""
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        s = make_file_input_stream(f, 0, None, FileInputStreamOptions(buffer_size=4 * BLOCK, read_ahead=2))
        got = b""
        async with faults([FaultRule(OP_READ, fd=f.fileno(), short=BLOCK + 100, nth=2)]) as inj:
            async for chunk in s:
                got += bytes(chunk)
            await s.close()
        assert [e[0] for e in inj.log] == ["short"]
        assert got == numbered(64)
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


def test_short_write(run, scratch, data, reports):
    """dma_write returns the short count; an output stream reports a short background write as
    ENOSPC at the writer's next call, and refuses every call after."""
    out = scratch / "out.dat"

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(out, RW | ioengine.OpenFlags.CREATE | ioengine.OpenFlags.TRUNCATE)
        b = f.allocate_buffer(4 * BLOCK)
        async with faults([FaultRule(OP_WRITE, fd=f.fileno(), short=BLOCK, nth=1)]):
            assert await f.dma_write(0, b) == BLOCK
        s = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=64 * 1024, write_behind=2,
                                                               preallocation_size=0))
        with pytest.raises(OSError) as ei:
            async with faults([FaultRule(OP_WRITE, fd=f.fileno(), short=True, nth=2)]):
                for i in range(12):
                    await s.write(block(i) * 16)
                await s.flush()
        assert ei.value.errno == errno.ENOSPC and "short write" in str(ei.value)
        assert ei.value.filename == str(out)
        with pytest.raises(OSError):
            await s.write(b"x")
        with pytest.raises(OSError):
            await s.close()
        g = await ioengine.open_file_dma(data, RW)
        await _healthy(g, reports)
        await g.close()

    run(body())
    assert reports == []


def test_delayed_completions(run, data, reports):
    """Held completions: the others complete meanwhile; released, each future gets its own
    result, in the order they were held; a cancelled awaiter's one still completes in the kernel."""
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        r = ioengine.get_reactor()
        bufs = [f.allocate_buffer(BLOCK) for _ in range(N)]
        inj = inject_faults(r, [FaultRule(OP_READ, delay=3600, nth=n) for n in (2, 5, 7)])
        futs = [asyncio.ensure_future(f.dma_read(i * BLOCK, bufs[i])) for i in range(N)]
        order: list[int] = []
        for i, fut in enumerate(futs):
            fut.add_done_callback(lambda _, i=i: order.append(i))
        while len(order) < N - 3:
            await asyncio.sleep(0.001)
        held = [i for i in range(N) if not futs[i].done()]
        assert len(held) == 3 and r.inflight == 3
        await asyncio.sleep(0.01)
        assert len(order) == N - 3  # held back until released
        futs[held[1]].cancel()  # its awaiter goes; the read is still the kernel's
        await asyncio.sleep(0)
        remove_faults(r)  # releases everything held, then puts the real backend back
        await asyncio.gather(*futs, return_exceptions=True)
        assert futs[held[1]].cancelled()
        for i in range(N):
            if i != held[1]:
                assert futs[i].result() == BLOCK and bytes(bufs[i]) == block(i), i
        # the held ones (but the cancelled one, done at its cancel) resolve once each, after the
        # release (their hold order is the kernel's completion order, not their index order)
        assert sorted(i for i in order if i in held and i != held[1]) == [held[0], held[2]]
        assert [e[0] for e in inj.log].count("delay") == 3
        await asyncio.sleep(0)
        # a short delay, released by the loop's timer
        async with faults([FaultRule(OP_READ, delay=0.02)]) as inj2:
            res = await asyncio.gather(*(f.dma_read(i * BLOCK, bufs[i]) for i in range(N)))
        assert res == [BLOCK] * N and all(bytes(bufs[i]) == block(i) for i in range(N))
        assert len(inj2.log) == N
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


def test_probability_is_seeded(run, data, reports):
    """Rules with a probability fire on the same requests for the same seed; every failure reaches
    its caller, every other read its data."""
    async def once(f, seed):
        failed = []
        b = f.allocate_buffer(BLOCK)
        rule = FaultRule(OP_READ, errno=errno.EIO, probability=0.3)
        async with faults([rule], seed=seed):
            for i in range(40):
                try:
                    assert await f.dma_read(i * BLOCK, b) == BLOCK and bytes(b) == block(i)
                except OSError as e:
                    _is_error(e, errno.EIO, "dma_read", data)
                    failed.append(i)
        assert len(failed) == rule.fired
        return failed

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        a = await once(f, 7)
        b = await once(f, 7)
        c = await once(f, 8)
        assert a == b and 0 < len(a) < 40 and a != c
        await _healthy(f, reports)
        await f.close()

    run(body())
    assert reports == []


def test_submit_failures_with_a_small_ring(run, data, reports):
    """Failed-at-submission records among many more than the ring holds: the accepted count
    stays right (every request completes once, with its own result)."""
    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(data, RW)
        bufs = [f.allocate_buffer(BLOCK) for _ in range(64)]
        rules = [FaultRule(OP_READ, errno=errno.EAGAIN, when="submit", probability=0.25),
                 FaultRule(OP_READ, errno=errno.EIO, probability=0.1)]
        async with faults(rules, seed=3) as inj:
            res = await asyncio.gather(*(f.dma_read(i * BLOCK, bufs[i]) for i in range(64)), return_exceptions=True)
        errs = [x for x in res if isinstance(x, BaseException)]
        assert len(errs) == sum(r.fired for r in rules) == len(inj.log)
        for i, x in enumerate(res):
            if isinstance(x, BaseException):
                assert isinstance(x, OSError) and x.errno in (errno.EAGAIN, errno.EIO)
            else:
                assert x == BLOCK and bytes(bufs[i]) == block(i)
        await _healthy(f, reports)
        await f.close()

    run(body(), ring_entries=8)
    assert reports == []
