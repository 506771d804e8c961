"""dma_read / dma_write issue the request at the call, as Seastar's do, and return what awaits
its future, a coroutine written in C: ``await``, ``asyncio.create_task``, ``gather`` and
``wait_for`` take it. What cannot go at once (a bad argument, a closed file, another thread)
stays a plain coroutine that raises, or issues, when awaited."""
from __future__ import annotations

import asyncio
import errno
import gc
import inspect
import threading

import pytest

import ioengine
from ioengine import OpenFlags as F
from ioengine._iopath import IoFutureIter


def test_a_read_and_a_write_are_in_flight_before_they_are_awaited(run, scratch):
    path = scratch / "f"

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            w = f.allocate_buffer(4096)
            w[:] = b"e" * 4096
            n0 = r.inflight
            wf = f.dma_write(0, w)
            assert r.inflight == n0 + 1  # issued by the call itself, no task ran yet
            assert isinstance(wf, IoFutureIter) and asyncio.iscoroutine(wf) and not asyncio.isfuture(wf)
            assert await wf == 4096
            b = f.allocate_buffer(4096)
            rf = f.dma_read(0, b)
            assert r.inflight == n0 + 1
            assert await rf == 4096 and bytes(b) == b"e" * 4096
            # the request's future runs as a task too, and with gather and wait_for
            assert await asyncio.create_task(f.dma_read(0, b)) == 4096
            assert await asyncio.gather(f.dma_read(0, b), f.dma_write(4096, w)) == [4096, 4096]
            assert await asyncio.wait_for(f.dma_read(4096, b), 10) == 4096
            assert bytes(b) == b"e" * 4096
            # asyncio.wait refuses coroutines: it takes them as tasks, and read_future's future
            done, _ = await asyncio.wait({asyncio.ensure_future(f.dma_write(0, w)), f.read_future(4096, b)})
            assert sorted(d.result() for d in done) == [4096, 4096]

    run(main())


@pytest.mark.parametrize("steps", [0, 1])
def test_a_task_of_a_request_cancelled_before_or_after_its_first_step(run, scratch, steps):
    """The task ends cancelled; the read itself still completes into its buffer (pinned until
    then), and a failing request whose task was cancelled logs nothing (no "never retrieved")."""
    path = scratch / "f"

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            w = f.allocate_buffer(4096)
            w[:] = b"c" * 4096
            await f.dma_write(0, w)
            b = f.allocate_buffer(4096)
            t = asyncio.create_task(f.dma_read(0, b))
            for _ in range(steps):
                await asyncio.sleep(0)
            t.cancel()
            if steps:  # after a step the read may have completed already (the task then ended with it)
                got = await asyncio.gather(t, return_exceptions=True)
                assert got == [4096] or isinstance(got[0], asyncio.CancelledError)
            else:
                with pytest.raises(asyncio.CancelledError):
                    await t
            await r.drain()
            assert r.inflight == 0 and b.exports == 0
            assert bytes(b) == b"c" * 4096  # the read went on: the kernel wrote the buffer
        async with await ioengine.open_file_dma(path, F.WO) as f:
            # the kernel refuses a read of a write-only file (EBADF): the task is cancelled
            # before it sees that, and the error is nobody's to log
            t = asyncio.create_task(f.dma_read(0, b))
            for _ in range(steps):
                await asyncio.sleep(0)
            t.cancel()
            # after a step the kernel may have answered already (the task then ended with it)
            with pytest.raises(asyncio.CancelledError if not steps else (asyncio.CancelledError, OSError)):
                await t
            await r.drain()
            gc.collect()
            with pytest.raises(OSError) as e:  # awaited, the same error reaches the caller
                await f.dma_read(0, b)
            assert e.value.errno == errno.EBADF and "dma_read" in str(e.value) and str(path) in str(e.value)

    run(main())


def test_what_cannot_go_at_once_raises_when_awaited(run, scratch):
    path = scratch / "f"

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            b = f.allocate_buffer(4096)
            bad = f.dma_read(1, b)  # misaligned: nothing reaches the kernel, the error waits
            assert not isinstance(bad, IoFutureIter) and asyncio.iscoroutine(bad)
            with pytest.raises(ValueError, match="position 1 is not a multiple"):
                await bad
            bad_write = f.dma_write(1, b)
            with pytest.raises(ValueError, match="position 1 is not a multiple"):
                await bad_write
        closed = f.dma_read(0, b)
        with pytest.raises(ioengine.ClosedFileError):
            await closed

    run(main())


def test_a_call_from_another_thread_issues_nothing_there(run, scratch):
    """The reactor is its loop thread's: a call on another thread (for run_coroutine_threadsafe)
    gets a coroutine, and the request is issued when the loop runs it."""
    path = scratch / "f"

    async def main():
        r = ioengine.get_reactor()
        loop = asyncio.get_running_loop()
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            b = f.allocate_buffer(4096)
            await f.dma_write(0, b)
            got: list = []

            def other() -> None:
                coro = f.dma_read(0, b)
                got.append((type(coro).__name__, r.inflight))
                got.append(asyncio.run_coroutine_threadsafe(coro, loop))
                for call in (lambda: f.read_future(0, b), lambda: f.read_many_future([(0, b)])):
                    try:  # the future-returning calls refuse: they would stage on this thread
                        call()
                    except RuntimeError as e:
                        got.append(str(e))

            th = threading.Thread(target=other)
            th.start()
            while th.is_alive():
                await asyncio.sleep(0.001)
            kind, inflight = got[0]
            assert kind == "coroutine" and inflight == 0
            assert await asyncio.wrap_future(got[1]) == 4096
            assert len(got) == 4 and all("another thread than its reactor's" in m for m in got[2:])

    run(main())


def test_the_c_methods_stand_for_the_python_ones(run, scratch):
    """File.dma_read / dma_write are C (native/filemethods.c) for the plain case; keywords, a
    request that cannot go at once and bad calls reach the Python methods, which stay the reference."""
    from ioengine.file import File
    assert type(File.__dict__["dma_read"]).__name__ == "method_descriptor"
    assert type(File.__dict__["dma_write"]).__name__ == "method_descriptor"
    assert callable(File._py_dma_read) and callable(File._py_dma_write)
    # help() and inspect see the Python methods' docs and signature
    assert File.dma_read.__doc__.startswith("Read into ``buf`` at ``pos``")
    assert File.dma_write.__doc__.startswith("Write ``buf`` at ``pos``")
    assert str(inspect.signature(File.dma_read)) == "(self, /, pos, buf, io_class=None, *, ioprio=0)"
    path = scratch / "f"
    cls = ioengine.IoClass("eager_c", 100)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            w = f.allocate_buffer(8192)
            w[:] = b"k" * 4096 + b"l" * 4096
            assert await f.dma_write(0, w, cls) == 8192  # io_class positional: the C path
            b = f.allocate_buffer(4096)
            assert await f.dma_read(4096, b, io_class=cls) == 4096 and bytes(b) == b"l" * 4096
            prio = ioengine.ioprio_value(ioengine.IoPrioClass.BE, 4)
            assert await f.dma_read(0, b, ioprio=prio) == 4096 and bytes(b) == b"k" * 4096
            assert await f.dma_write(0, w, ioprio=prio) == 8192
            with pytest.raises(TypeError):
                f.dma_read(0)
            with pytest.raises(TypeError):
                f.dma_write(0, w, cls, 1)
            with pytest.raises(TypeError):
                f.dma_read(0, b, colour=1)
            with pytest.raises(TypeError):  # a method of File, not of anything else
                File.dma_read(object(), 0, b)

    run(main())
