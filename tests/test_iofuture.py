"""IoFuture (native/iofuture.c): the reactor's request future, written in C.

Its protocol is checked against asyncio's own future: the same scenarios run with both and must
give the same observations (on asyncio's loop and uvloop). Then, on real I/O through every
backend and loop: the reads' futures are IoFutures, a batch of completions resumes the awaiting
tasks from the reactor's flush (not through call_soon), except when a task is running (then
call_soon, as asyncio does); a cancelled awaiter leaves the buffer pinned until the kernel is
done; kernel errors arrive as OSError; a callback that raises is reported and loses nothing.
"""
from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import gc
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import ioengine
from ioengine import IoFuture, OpenFlags
from ioengine._iopath import IoPath, Wakeups
from ioengine.testing import OP_READ, FaultRule, faults

BS = 4096
var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="-")


def arun(loop_kind: str, main: Callable[[], Any]) -> Any:
    """``main()`` on a fresh loop of ``loop_kind`` (no reactor)."""
    if loop_kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(main())
    return asyncio.run(main())


def _exc(e: BaseException) -> tuple:
    return (type(e).__name__, e.args)


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except BaseException as e:  # noqa: BLE001 - observed, compared
        return ("raised",) + _exc(e)


# -- the protocol, against asyncio's future --------------------------------------------------


async def _states(new: Callable[[], Any]) -> list:
    f = new()
    obs: list[Any] = [f.done(), f.cancelled(), _call(f.result), _call(f.exception), asyncio.isfuture(f)]
    f.set_result(5)
    obs += [f.done(), f.cancelled(), f.result(), f.exception(), _call(lambda: f.set_result(6))[:2]]
    obs += [_call(lambda: f.set_exception(ValueError()))[:2], f.cancel(), f.result()]
    obs += [await f, await f]  # awaited twice
    return obs


async def _exceptions(new: Callable[[], Any]) -> list:
    f = new()
    f.set_exception(ValueError)  # a class is instantiated
    obs: list[Any] = [type(f.exception()).__name__, _call(f.result), f.done(), f.cancelled()]
    try:
        raise KeyError("k")
    except KeyError as e:
        g = new()
        g.set_exception(e)
    try:
        await g
    except KeyError as e:  # raised with the traceback it had when set, plus where it is awaited
        obs.append([fr.name for fr in traceback.extract_tb(e.__traceback__)][-1])
    obs += [_call(lambda: new().set_exception(StopIteration()))[:2], _call(lambda: new().set_exception("x"))[:2]]
    return obs


async def _cancel(new: Callable[[], Any]) -> list:
    f = new()
    seen: list[Any] = []
    f.add_done_callback(lambda x: seen.append(x.cancelled()))
    obs: list[Any] = [f.cancel("why"), seen[:], f.cancelled(), f.done(), _call(f.result), _call(f.exception)]
    obs += [f.cancel(), _call(lambda: f.set_result(1))[:2], _exc(f._make_cancelled_error())]
    await asyncio.sleep(0)
    obs.append(seen)
    g = new()
    g.cancel()
    obs += [_call(g.result)]
    # a task awaiting it is cancelled: the future is cancelled with the task's message
    h = new()
    t = asyncio.ensure_future(_await(h))
    await asyncio.sleep(0)
    t.cancel("stop")
    obs += [_call(lambda: None), await _outcome(t), h.cancelled(), _call(h.result)]
    return obs


async def _await(f: Any) -> Any:
    return await f


async def _outcome(aw: Any) -> tuple:
    try:
        return ("ok", await aw)
    except BaseException as e:  # noqa: BLE001 - observed, compared
        return ("raised",) + _exc(e)


async def _callbacks(new: Callable[[], Any]) -> list:
    f = new()
    seen: list[Any] = []

    def cb1(x: Any) -> None:
        seen.append(("cb1", var.get()))

    def cb2(x: Any) -> None:
        seen.append(("cb2", var.get(), x is f))

    def cb3(x: Any) -> None:
        seen.append(("cb3", var.get()))

    var.set("a")
    f.add_done_callback(cb1)
    var.set("b")
    f.add_done_callback(cb2)
    f.add_done_callback(cb1)
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")
    f.add_done_callback(cb3, context=ctx)
    var.set("c")
    obs: list[Any] = [f.remove_done_callback(cb1), f.remove_done_callback(cb1)]
    f.set_result(None)
    obs.append(seen[:])  # nothing runs inside set_result
    await asyncio.sleep(0)
    obs.append(seen[:])
    f.add_done_callback(cb1)  # already done: scheduled, not run here
    obs.append(len(seen))
    await asyncio.sleep(0)
    obs.append(seen[-1])
    # removing the first of several keeps the order of the rest
    g = new()
    order: list[int] = []
    firsts = [functools.partial(order.append, i) for i in range(4)]
    for fn in firsts:
        g.add_done_callback(lambda _f, fn=fn: fn())
    first = lambda _f: order.append(-1)  # noqa: E731
    g.add_done_callback(first)
    obs.append(g.remove_done_callback(first))
    g.set_result(0)
    await asyncio.sleep(0)
    obs.append(order)
    return obs


async def _combinators(new: Callable[[], Any]) -> list:
    loop = asyncio.get_running_loop()
    obs: list[Any] = []
    a, b = new(), new()
    loop.call_soon(a.set_result, 1)
    loop.call_soon(b.set_result, 2)
    obs.append(await asyncio.gather(a, b))
    c, d, e = new(), new(), new()
    c.set_exception(OSError(errno.EIO, "io"))
    d.cancel("gone")
    e.set_result(3)
    obs.append([_exc(r) if isinstance(r, BaseException) else r
                for r in await asyncio.gather(c, d, e, return_exceptions=True)])
    c2, d2 = new(), new()
    d2.cancel()
    obs.append(await _outcome(asyncio.gather(c2, d2)))
    c2.set_result(0)
    w = new()
    obs.append(await _outcome(asyncio.wait_for(w, 0.01)))
    obs.append((w.cancelled(), w.done()))
    w2 = new()
    loop.call_later(0.001, w2.set_result, "in time")
    obs.append(await asyncio.wait_for(w2, 5))
    x, y = new(), new()
    loop.call_soon(y.set_result, "y")
    done, pending = await asyncio.wait([x, y], return_when=asyncio.FIRST_COMPLETED)
    obs.append((done == {y}, pending == {x}))
    x.cancel()
    s = new()
    outer = asyncio.shield(s)
    outer.cancel()
    obs.append((await _outcome(outer), s.cancelled()))
    s.set_result("inner")
    obs.append(await s)
    z = new()
    obs.append((asyncio.ensure_future(z) is z, asyncio.wrap_future(z) is z))
    z.set_result(None)
    # awaited from two tasks at once
    m = new()
    t1, t2 = asyncio.ensure_future(_await(m)), asyncio.ensure_future(_await(m))
    await asyncio.sleep(0)
    m.set_result("both")
    obs.append(await asyncio.gather(t1, t2))
    return obs


async def _never_retrieved(new: Callable[[], Any]) -> list:
    loop = asyncio.get_running_loop()
    reports: list[dict] = []
    loop.set_exception_handler(lambda _l, ctx: reports.append(ctx))
    f = new()
    f.set_exception(ValueError("lost"))
    del f
    g = new()
    g.set_exception(ValueError("seen"))
    g.exception()
    del g
    h = new()
    h.set_exception(ValueError("awaited"))
    await _outcome(h)
    del h
    gc.collect()
    return [(r["message"].split(" ", 1)[1], _exc(r["exception"]), type(r["future"]).__name__ in ("Future", "IoFuture"))
            for r in reports]


SCENARIOS = [_states, _exceptions, _cancel, _callbacks, _combinators, _never_retrieved]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__.strip("_") for s in SCENARIOS])
def test_behaves_as_asyncio_future(loop_kind, scenario):
    async def main(make: Callable[[asyncio.AbstractEventLoop], Any]) -> list:
        loop = asyncio.get_running_loop()
        return await scenario(lambda: make(loop))

    asyncio_obs = arun(loop_kind, lambda: main(lambda loop: loop.create_future()))
    ours = arun(loop_kind, lambda: main(lambda loop: IoFuture(loop=loop)))
    assert ours == asyncio_obs


def test_type_facts(loop_kind):
    async def main() -> None:
        f = IoFuture()  # the running loop
        assert f.get_loop() is asyncio.get_running_loop()
        assert asyncio.isfuture(f) and not isinstance(f, asyncio.Future)
        assert IoFuture._asyncio_future_blocking is not None  # the class carries the marker
        assert f._asyncio_future_blocking is False
        assert repr(f) == "<IoFuture pending>"
        f.set_result(4096)
        assert repr(f) == "<IoFuture finished result=4096>"
        assert weakref.ref(f)() is f
        assert IoFuture[int] is not None
        with pytest.raises(TypeError):
            f.add_done_callback(print, context="not a context")
        with pytest.raises(ValueError):
            f._log_traceback = True
        with pytest.raises(TypeError):
            type("Sub", (IoFuture,), {})

    arun(loop_kind, main)
    with pytest.raises(RuntimeError):
        IoFuture()  # no running loop


# -- delivery: from the batch, or through call_soon ------------------------------------------


def _path(loop: asyncio.AbstractEventLoop) -> IoPath:
    return IoPath(functools.partial(IoFuture, loop=loop), lambda req, err: OSError(err, "injected"),
                  lambda grant, n: None)


def test_deliver_runs_callbacks_at_once_outside_tasks_and_via_call_soon_inside(loop_kind):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        path = _path(loop)
        resumed: list[Any] = []

        async def waiter(fut: Any) -> None:
            try:
                resumed.append(await fut)
            except OSError as e:
                resumed.append(e.errno)

        # inside a task (this one): resolved now, resumed a turn later by the loop
        fut, ud = path.register(0, BS, None, "dma_read", "owner", None, None)
        assert type(fut) is IoFuture
        t = asyncio.ensure_future(waiter(fut))
        await asyncio.sleep(0)
        path.complete([ud], [BS])
        assert fut.done() and not resumed
        path.deliver()
        assert not resumed, "a task's step cannot run inside another's"
        await t
        assert resumed == [BS]

        # from a loop callback: the waiters resume inside deliver(), in order
        futs = [path.register(0, BS, None, "dma_read", "owner", None, None) for _ in range(3)]
        tasks = [asyncio.ensure_future(waiter(f)) for f, _ in futs]
        await asyncio.sleep(0)
        path.complete([ud for _, ud in futs], [BS, -errno.EIO, 7])
        resumed.clear()
        during: list[Any] = []

        def in_callback() -> None:
            path.deliver()
            during.extend(resumed)

        loop.call_soon(in_callback)
        await asyncio.gather(*tasks)
        assert during == [BS, errno.EIO, 7]
        assert path.inflight == 0

    arun(loop_kind, main)


def test_wakeups_batch_holds_callbacks_until_deliver(loop_kind):
    """Wakeups: the transport's batch of answers (ioengine.smp): resolved now, resumed together
    by deliver() (at once from a loop callback, with call_soon from inside a task)."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        w = Wakeups()
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="-")
        resumed: list[Any] = []

        async def waiter(fut: Any, tag: str) -> None:
            var.set(tag)
            try:
                resumed.append((await fut, var.get()))
            except LookupError as e:
                resumed.append((repr(e), var.get()))

        futs = [IoFuture(loop=loop) for _ in range(3)]
        tasks = [asyncio.ensure_future(waiter(f, str(i))) for i, f in enumerate(futs)]
        await asyncio.sleep(0)
        w.set_result(futs[0], "a")
        w.set_exception(futs[1], LookupError("b"))
        w.set_result(futs[2], "c")
        w.set_result(futs[2], "ignored")  # done already: left alone, as the transport expects
        assert all(f.done() for f in futs) and w.held == 3 and not resumed
        during: list[Any] = []

        def in_callback() -> None:
            w.deliver()
            during.extend(resumed)

        loop.call_soon(in_callback)
        await asyncio.gather(*tasks)
        assert during == [("a", "0"), ("LookupError('b')", "1"), ("c", "2")]  # each in its own context
        assert w.held == 0
        # inside a task: the loop runs them a turn later
        f = IoFuture(loop=loop)
        t = asyncio.ensure_future(waiter(f, "t"))
        await asyncio.sleep(0)
        resumed.clear()
        w.set_result(f, "x")
        w.deliver()
        assert not resumed
        await t
        assert resumed == [("x", "t")]
        with pytest.raises(TypeError, match="expected an IoFuture"):
            w.set_result(loop.create_future(), 1)
        with pytest.raises(TypeError, match="expected an exception instance"):
            w.set_exception(IoFuture(loop=loop), "not an exception")
        with pytest.raises(TypeError, match="no arguments"):
            Wakeups(1)

    arun(loop_kind, main)


def test_fatal_exception_in_a_callback_propagates_and_the_rest_still_run(loop_kind):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        path = _path(loop)
        (f1, u1), (f2, u2) = (path.register(0, BS, None, "dma_read", "owner", None, None) for _ in range(2))
        ran: list[str] = []

        def boom(_f: Any) -> None:
            raise KeyboardInterrupt

        f1.add_done_callback(boom)
        f2.add_done_callback(lambda _f: ran.append("second"))
        path.complete([u1, u2], [BS, BS])

        def in_callback() -> None:
            with pytest.raises(KeyboardInterrupt):
                path.deliver()
            ran.append("after")

        loop.call_soon(in_callback)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert ran == ["after", "second"]  # the rest went through call_soon

    arun(loop_kind, main)


# -- real I/O ------------------------------------------------------------------------------


def _numbered(n: int) -> bytes:
    return b"".join(i.to_bytes(8, "little") * (BS // 8) for i in range(n))


@pytest.fixture
def data(scratch):
    path = scratch / "numbered.dat"
    path.write_bytes(_numbered(64))
    return path


def _in_flush() -> bool:
    # the reactor's flush, or the loop turn in C (IoPath.turn) from a reaping callback
    return any(fr.name in ("_flush", "_reap_here") and fr.filename.endswith("reactor.py")
               for fr in traceback.extract_stack())


def test_reads_resume_from_the_flush(run, data):
    """The reads' futures are IoFutures; their awaiting tasks resume inside the reactor's flush
    (no call_soon) and get the right bytes; gather, wait_for, shield and wait take them."""
    async def main() -> None:
        async with await ioengine.open_file_dma(data, OpenFlags.RO) as f:
            bufs = [f.allocate_buffer(BS) for _ in range(32)]
            where: list[bool] = []

            async def read(i: int) -> int:
                n = await f.read_future(i * BS, bufs[i])
                where.append(_in_flush())
                return n

            assert await asyncio.gather(*(read(i) for i in range(32))) == [BS] * 32
            assert all(where), where
            for i, b in enumerate(bufs):
                assert bytes(b) == _numbered(64)[i * BS:(i + 1) * BS]
            fut = f.read_future(0, bufs[0])
            assert type(fut) is IoFuture and asyncio.isfuture(fut)
            assert await fut == BS and await fut == BS  # awaited twice
            assert await asyncio.wait_for(f.read_future(BS, bufs[1]), 10) == BS
            assert await asyncio.shield(f.read_future(2 * BS, bufs[2])) == BS
            done, _ = await asyncio.wait([f.read_future(3 * BS, bufs[3])])
            assert [d.result() for d in done] == [BS]
            assert await f.dma_read(4 * BS, bufs[4]) == BS

    run(main())


def test_cancelled_awaiter_leaves_the_buffer_pinned(run, data):
    async def main() -> None:
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(data, OpenFlags.RO) as f:
            for how in ("task", "future"):
                buf = f.allocate_buffer(BS)
                mv = memoryview(buf)
                if how == "task":
                    # the read is issued by the call; the task is cancelled before its first
                    # step (after it, the read may have completed: test_eager_requests.py)
                    aw: Any = asyncio.ensure_future(f.dma_read(5 * BS, buf))
                else:
                    aw = f.read_future(5 * BS, buf)
                inflight = r.inflight
                aw.cancel()
                buf.release()
                if inflight:
                    assert buf.exports > 0 and not buf.freed, "the kernel may still write into it"
                with pytest.raises(asyncio.CancelledError):
                    await aw
                await r.drain()
                assert r.inflight == 0
                assert bytes(mv) == _numbered(64)[5 * BS:6 * BS]  # the read landed all the same
                mv.release()
                del aw, mv
                gc.collect()
                assert buf.freed

    run(main())


def test_kernel_error_arrives_as_oserror(run, data):
    async def main() -> None:
        async with await ioengine.open_file_dma(data, OpenFlags.RO) as f:
            bufs = [f.allocate_buffer(BS) for _ in range(4)]
            async with faults([FaultRule(op=OP_READ, errno=errno.EIO, nth=2)]):
                res = await asyncio.gather(*(f.dma_read(i * BS, bufs[i]) for i in range(4)),
                                           return_exceptions=True)
            errors = [e for e in res if isinstance(e, BaseException)]
            assert len(errors) == 1 and isinstance(errors[0], OSError), res
            assert errors[0].errno == errno.EIO and "dma_read" in str(errors[0])
            assert res.count(BS) == 3
            # one nobody retrieves is reported (asyncio's "exception was never retrieved")
            loop = asyncio.get_running_loop()
            reports: list[dict] = []
            loop.set_exception_handler(lambda _l, ctx: reports.append(ctx))
            try:
                async with faults([FaultRule(op=OP_READ, errno=errno.EIO)]):
                    fut = f.read_future(0, bufs[0])
                    await ioengine.get_reactor().drain()
                    assert fut.done()
                    del fut
                    gc.collect()
            finally:
                loop.set_exception_handler(None)
            assert [r["message"] for r in reports] == ["IoFuture exception was never retrieved"]
            assert isinstance(reports[0]["exception"], OSError)

    run(main())


def test_a_raising_callback_loses_nothing(run, data):
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reports: list[dict] = []
        loop.set_exception_handler(lambda _l, ctx: reports.append(ctx))
        try:
            async with await ioengine.open_file_dma(data, OpenFlags.RO) as f:
                bufs = [f.allocate_buffer(BS) for _ in range(16)]
                futs = [f.read_future(i * BS, bufs[i]) for i in range(16)]

                def boom(_f: Any) -> None:
                    raise RuntimeError("callback failed")

                for fut in futs[::3]:
                    fut.add_done_callback(boom)
                assert await asyncio.gather(*futs) == [BS] * 16
                await asyncio.sleep(0)
        finally:
            loop.set_exception_handler(None)
        assert len(reports) == len(futs[::3])
        for r in reports:
            assert r["message"].startswith("Exception in callback")
            assert isinstance(r["exception"], RuntimeError)

    run(main())


def test_completion_reaped_inside_a_task_resumes_through_call_soon(run, data):
    """Completions reaped while a task runs (here the test's own) cannot resume another task
    there: asyncio refuses to start a task's step inside another's. They go through call_soon."""
    async def main() -> None:
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(data, OpenFlags.RO) as f:
            buf = f.allocate_buffer(BS)
            for _ in range(50):
                fut = f.read_future(7 * BS, buf)
                where: list[bool] = []
                fut.add_done_callback(lambda _f, where=where: where.append(_in_flush()))  # this attempt's list
                t = asyncio.ensure_future(_await(fut))
                await asyncio.sleep(0)
                if not fut.done():
                    break
                # The read completed in the loop turn that started t (a busy host: the flush
                # reaped it before this task could hold the loop), so the completion was not
                # reaped here: try again.
                assert await t == BS
            else:
                pytest.skip("every read completed before its task could wait for it")
            deadline = time.monotonic() + 10
            while not fut.done():  # submit and reap without yielding to the loop
                assert time.monotonic() < deadline
                r._flush()
                r._poll_completions()
                time.sleep(0.0002)
            r._flush()  # deliver() inside this task
            assert not where and not t.done()
            assert await t == BS
            assert where == [False]
            assert bytes(buf) == _numbered(64)[7 * BS:8 * BS]

    run(main())
