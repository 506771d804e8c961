"""A File's per-write books in C (``ioengine._iopath.WriteBooks``, SizeTracker's base) keep the
same books as the Python reference below (SizeTracker.write_done as it was written in Python),
whether fed by its ``write_done`` method, by a call, or by the reactor's completion path (a
request whose ``on_done`` is the books object: no request tuple, no Python call), also when the
write was staged by IoPath itself and counted in there (File.dma_write's path). Then real
writes through every backend and loop: concurrent writes extending the file, and writes whose
tasks are cancelled while in flight, leave the books settled and the file closable.
"""
from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import weakref
from typing import Any

import pytest

import ioengine
from ioengine import OpenFlags as F
from ioengine._iopath import IoPath, WriteBooks
from ioengine.file import SizeTracker

from foundation_util import pattern_block, read_file

BS = 4096


class RefBooks:
    """The reference: SizeTracker's write_done in Python, as it was before it moved to C."""

    def __init__(self, known: int, logical: int) -> None:
        self.writes = 0
        self.pending_end = 0
        self.known = known
        self.logical = logical
        self.idle: Any = None

    def write_done(self, req: tuple[Any, ...], res: int) -> None:
        pos = req[4]
        if res > 0 and pos + res > self.known:
            self.known = pos + res
            if self.logical >= 0:
                self.logical = pos + res
        self.writes -= 1
        if self.writes == 0:
            self.pending_end = 0
            w = self.idle
            if w is not None and not w.done():
                w.set_result(None)


def _sequence(seed: int) -> list[tuple]:
    """Writes issued and completed out of order: full, short, zero and failed results, the
    File's never-issued undo, idle futures (pending, cancelled, done) and truncates."""
    rnd = random.Random(seed)
    ops: list[tuple] = []
    inflight: list[tuple[int, int]] = []
    for _ in range(400):
        r = rnd.random()
        if inflight and r < 0.45:
            pos, n = inflight.pop(rnd.randrange(len(inflight)))
            ops.append(("done", pos, n, rnd.choice((n, n, n, n // 2, 0, -5, -28))))
        elif r < 0.82:
            pos, n = rnd.randrange(96) * BS, rnd.choice((BS, 2 * BS, 16 * BS))
            inflight.append((pos, n))
            ops.append(("issue", pos, n))
        elif r < 0.86:
            ops.append(("undo", rnd.randrange(96) * BS, BS))
        elif r < 0.95:
            ops.append(("idle", rnd.choice(("pending", "pending", "cancelled", "done", "none"))))
        else:
            ops.append(("truncate", rnd.randrange(96) * BS))
    rnd.shuffle(inflight)
    ops.extend(("done", pos, n, n) for pos, n in inflight)
    return ops


def _idle_state(w: Any) -> Any:
    if w is None:
        return None
    if not w.done():
        return "pending"
    return "cancelled" if w.cancelled() else ("result", w.result())


def _state(b: Any) -> tuple:
    return b.writes, b.pending_end, b.known, b.logical, _idle_state(b.idle)


def _replay(ops: list[tuple], how: str, known: int, logical: int, loop: asyncio.AbstractEventLoop) -> list[tuple]:
    b: Any = RefBooks(known, logical) if how == "python" else WriteBooks(known=known, logical=logical)
    path = IoPath(loop.create_future, lambda req, err: OSError(err, os.strerror(err)), lambda g, n: None)
    uds: dict[tuple[int, int], list[tuple[Any, int]]] = {}
    states = []
    for op in ops:
        if op[0] == "issue":
            _, pos, n = op
            if how == "staged":  # File.dma_write's path: IoPath stages the write and counts it in
                b.straight = True
                fut = path.io(1, 0, bytes(n), pos, 0, 0, "dma_write", "owner", b, None, None)
                assert fut is not None
                (ud,) = path.take_staged()
                uds.setdefault((pos, n), []).append((fut, ud))
            else:
                b.writes += 1
                b.pending_end = max(b.pending_end, pos + n)
            if how == "completion":
                uds.setdefault((pos, n), []).append(path.register(pos, n, None, "dma_write", "owner", b, None))
        elif op[0] == "done":
            _, pos, n, res = op
            req = (None, None, "dma_write", "owner", pos, n, b, None)
            if how == "staged":
                fut, ud = uds[(pos, n)].pop(0)
                path.complete([ud], [res])
                path.deliver()
                got = fut.exception() if res < 0 else fut.result()
                assert got == res if res >= 0 else isinstance(got, OSError) and got.errno == -res
            elif how == "completion":
                fut, ud = uds[(pos, n)].pop(0)
                path.finish(ud, res)
                got = fut.exception() if res < 0 else fut.result()
                assert got == res if res >= 0 else isinstance(got, OSError) and got.errno == -res
            elif how == "call":
                b(req, res)
            else:
                b.write_done(req, res)
        elif op[0] == "undo":  # File._submit_write when the submission raised
            b.writes += 1
            b.write_done((None, None, None, None, op[1], op[2], None), -1)
        elif op[0] == "idle":
            w = None if op[1] == "none" else loop.create_future()
            if op[1] == "cancelled":
                w.cancel()
            elif op[1] == "done":
                w.set_result("before")
            b.idle = w
        else:  # truncate: what SizeTracker.truncated() does to these counters
            b.known = op[1]
            if b.logical >= 0:
                b.logical = op[1]
        states.append(_state(b))
    assert path.inflight == 0
    return states


@pytest.mark.parametrize("sloppy", [False, True], ids=["plain", "sloppy"])
@pytest.mark.parametrize("seed", range(4))
def test_c_and_python_write_books_match(seed, sloppy):
    ops = _sequence(seed)
    kinds = {op[0] for op in ops}
    assert kinds == {"issue", "done", "undo", "idle", "truncate"}
    loop = asyncio.new_event_loop()
    try:
        known, logical = 3 * BS, (3 * BS if sloppy else -1)
        ref = _replay(ops, "python", known, logical, loop)
        # the sequence reaches what it is meant to: idle futures resolved by the books, a
        # cancelled one left alone, the file grown
        assert any(s[4] == ("result", None) for s in ref) and any(s[4] == "cancelled" for s in ref)
        assert ref[-1][0] == 0 and ref[-1][2] > known
        for how in ("method", "call", "completion", "staged"):
            assert _replay(ops, how, known, logical, loop) == ref, how
    finally:
        loop.close()


def test_write_done_checks_the_position_as_python_does():
    """res > 0 with a position that is not an int: the same exception as Python's, nothing
    counted; a failed write does not look at the position's value (only that req[4] exists)."""
    for b in (RefBooks(0, -1), WriteBooks()):
        b.writes = 1
        with pytest.raises(TypeError):
            b.write_done((None,) * 5, 4096)
        with pytest.raises(IndexError):
            b.write_done((None,) * 4, -1)
        assert (b.writes, b.known) == (1, 0)
        b.write_done((None,) * 5, -5)
        assert (b.writes, b.known) == (0, 0)


def test_size_tracker_is_write_books_with_python_slots():
    loop = asyncio.new_event_loop()
    t = SizeTracker(5 * BS, ioengine.FileOpenOptions(sloppy_size=True), loop)
    assert isinstance(t, WriteBooks)
    assert (t.writes, t.pending_end, t.known, t.logical, t.idle) == (0, 0, 5 * BS, 5 * BS, None)
    assert t.sloppy and t.sloppy_end == 5 * BS
    t.write_issued(7 * BS)
    t.write_done((None, None, None, None, 6 * BS, BS, None), BS)
    assert (t.writes, t.pending_end, t.known, t.logical, t.logical_size) == (0, 0, 7 * BS, 7 * BS, 7 * BS)
    assert not hasattr(t, "__dict__")
    loop.close()


def test_in_flight_request_holds_the_books():
    """The in-flight record keeps its books alive (a reference, visited by the GC) until the
    completion, which still counts the write when nothing else holds them."""

    class Books(WriteBooks):
        __slots__ = ("__weakref__",)

    loop = asyncio.new_event_loop()
    try:
        path = IoPath(loop.create_future, lambda req, err: OSError(err, ""), lambda g, n: None)
        b = Books()
        b.writes = 1
        refs = sys.getrefcount(b)
        fut, ud = path.register(0, BS, None, "dma_write", "owner", b, None)
        assert sys.getrefcount(b) == refs + 1
        assert path.request(ud)[6] is b
        idle = loop.create_future()
        idle.add_done_callback(lambda _, keep=b: keep)  # a cycle through the idle future
        b.idle = idle
        alive = weakref.ref(b)
        del b, idle
        gc.collect()
        assert alive() is not None
        path.finish(ud, BS)
        assert fut.result() == BS
        b = alive()
        assert b is not None and (b.writes, b.known) == (0, BS) and b.idle.result() is None
        loop.run_until_complete(asyncio.sleep(0))  # the idle future's callback runs
        del b
        gc.collect()
        assert alive() is None
    finally:
        loop.close()


# -- real I/O ------------------------------------------------------------------------------

def _blocks(f: Any, n: int) -> list[Any]:
    bufs = []
    for i in range(n):
        b = f.allocate_buffer(BS)
        b[:] = pattern_block(i, BS)
        bufs.append(b)
    return bufs


@pytest.mark.parametrize("sloppy", [False, True], ids=["plain", "sloppy"])
def test_concurrent_extending_writes_settle_the_books(run, scratch, sloppy):
    path = scratch / "grow"
    n = 64
    end = n * BS

    async def main():
        opts = ioengine.FileOpenOptions(sloppy_size=sloppy)
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE | F.TRUNCATE, options=opts) as f:
            bufs = _blocks(f, n)
            order = list(range(n))
            random.Random(1).shuffle(order)
            tasks = [asyncio.create_task(f.dma_write(i * BS, bufs[i])) for i in order]
            while f._size.writes < n and not all(t.done() for t in tasks):  # noqa: SLF001
                await asyncio.sleep(0)
            assert f.logical_size == end
            assert await asyncio.gather(*tasks) == [BS] * n
            books = f._size  # noqa: SLF001
            assert (books.writes, books.pending_end, books.known) == (0, 0, end)
            assert books.logical == (end if sloppy else -1)
            assert f.logical_size == end and await f.size() == end
            # a size-changing op after them waits for nothing and sees them all
            await f.truncate(end + BS)
            assert f.logical_size == end + BS
        assert os.stat(path).st_size == end + BS
        data = read_file(path)
        assert all(data[i * BS:(i + 1) * BS] == pattern_block(i, BS) for i in range(n))

    run(main())


@pytest.mark.parametrize("then", ["drain", "truncate", "close"])
@pytest.mark.parametrize("when", ["issued", "submitted"])
def test_cancelled_writes_still_settle_the_books(run, scratch, when, then):
    """Writes extending the file whose tasks are cancelled while in flight: the kernel still
    does them, and their completions still count them out (the C books: no Python call). A
    truncate issued at once waits for them (its idle future resolved by the books); close()
    waits for them too and closes."""
    path = scratch / "cancel"
    n, w = 32, 32 * BS  # large enough to be still in flight a loop turn or two later
    end = n * w

    async def main():
        r = ioengine.get_reactor()
        f = await ioengine.open_file_dma(path, F.RW | F.CREATE | F.TRUNCATE)
        bufs = []
        for i in range(n):
            b = f.allocate_buffer(w)
            b[:] = pattern_block(i, w)
            bufs.append(b)
        async def write(i: int) -> int:
            return await f.dma_write(i * w, bufs[i])

        if when == "issued":  # each write issued by its call, its task cancelled before it ever ran
            tasks = [asyncio.create_task(f.dma_write(i * w, bufs[i])) for i in range(n)]
        else:  # each issued by its task's first step, cancelled once they reached the kernel
            tasks = [asyncio.create_task(write(i)) for i in range(n)]
            await asyncio.sleep(0)
        while when == "submitted" and r.staged:
            await asyncio.sleep(0)
        books = f._size  # noqa: SLF001
        assert books.writes > 0  # some at least are in flight
        for t in tasks:
            t.cancel()
        if then == "truncate":  # at once, the writes still in flight: it waits on the idle future
            await f.truncate(end + BS)  # ordered after the cancelled writes: they land first
            assert books.idle is not None and books.idle.result() is None  # resolved by the books
            assert (books.writes, books.pending_end, books.known) == (0, 0, end + BS)
        got = await asyncio.gather(*tasks, return_exceptions=True)
        assert any(isinstance(g, asyncio.CancelledError) for g in got)
        assert all(g == w or isinstance(g, asyncio.CancelledError) for g in got)
        if then == "drain":
            await r.drain_owner(f)
            assert (books.writes, books.pending_end, books.known) == (0, 0, end)
            assert f.logical_size == end and await f.size() == end
        await f.close()
        assert (books.writes, books.pending_end) == (0, 0)
        assert books.known == (end + BS if then == "truncate" else end)
        assert r.inflight == 0
        return books.known

    size = run(main())
    assert os.stat(path).st_size == size
    data = read_file(path)
    assert all(data[i * w:(i + 1) * w] == pattern_block(i, w) for i in range(n))


def test_books_that_say_wait_keep_a_write_off_the_c_path():
    """A size barrier or sloppy growth (``straight`` False): IoPath.io stages nothing and counts
    nothing, so File.dma_write's Python path waits first."""
    loop = asyncio.new_event_loop()
    try:
        path = IoPath(loop.create_future, lambda req, err: OSError(err, os.strerror(err)), lambda g, n: None)
        b = WriteBooks(known=0)
        assert b.straight is False  # a new books object says wait until its owner says otherwise
        assert path.io(1, 0, bytes(BS), 0, 0, 0, "dma_write", "owner", b, None, None) is None
        assert (b.writes, b.pending_end, path.staged, path.inflight) == (0, 0, 0, 0)
        b.straight = True
        fut = path.io(1, 0, bytes(BS), 2 * BS, 0, 0, "dma_write", "owner", b, None, None)
        assert (b.writes, b.pending_end, path.staged) == (1, 3 * BS, 1)
        (ud,) = path.take_staged()
        path.complete([ud], [BS])
        path.deliver()
        assert fut.result() == BS and (b.writes, b.pending_end, b.known) == (0, 0, 3 * BS)
    finally:
        loop.close()


def test_a_file_s_books_say_wait_while_a_size_change_runs(run, scratch):
    """SizeTracker keeps ``straight`` with its barrier: off while truncate runs, on after."""
    async def main():
        async with await ioengine.open_file_dma(scratch / "f", F.RW | F.CREATE) as f:
            size = f._size
            assert size.straight
            barrier = await size.exclusive()
            assert not size.straight
            size.end_exclusive(barrier)
            assert size.straight
            b = f.allocate_buffer(BS)
            b[:] = pattern_block(0, BS)
            t = asyncio.ensure_future(f.truncate(8 * BS))
            await asyncio.sleep(0)
            assert await f.dma_write(0, b) == BS  # waits for the truncate, then goes
            await t
            assert size.straight and size.writes == 0 and size.known >= 8 * BS
        return read_file(scratch / "f")[:BS]

    assert run(main()) == pattern_block(0, BS)
