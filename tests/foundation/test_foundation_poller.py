"""Idle polling (idle_poll_time_us): the loop's selector is wrapped while the reactor lives."""
from __future__ import annotations

import asyncio
import time

import pytest

import ioengine
from ioengine import OpenFlags
from ioengine.poller import PollingSelector


def test_polling_reads_and_writes_are_exact(run, scratch, loop_kind):
    path = scratch / "f"

    async def main():
        loop = asyncio.get_running_loop()
        r = ioengine.get_reactor()
        assert r.polling == ("callback" if loop_kind == "uvloop" else "selector")
        if loop_kind == "asyncio":
            assert isinstance(loop._selector, PollingSelector)
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            bufs = []
            for i in range(64):
                b = f.allocate_buffer(4096)
                b[:] = bytes([i]) * 4096
                bufs.append(b)
            await asyncio.gather(*(f.dma_write(i * 4096, b) for i, b in enumerate(bufs)))
            for i in range(64):  # one at a time: every read waits with I/O in flight, polling
                got = await f.dma_read_exactly(i * 4096, 4096)
                assert bytes(got) == bytes([i]) * 4096
        return loop, r.polled

    # A window far longer than any disk's latency: a slow or busy host's reads (CI's took more
    # than 300 µs) would otherwise all outlast it and be found by the eventfd alone. Even then
    # the eventfd races the poller for each completion (about half go each way on a quiet
    # host; a loaded one, descheduling the loop while reads complete, can tip a whole run to
    # the eventfd): a few runs, and polling must have found completions in one of them.
    for _ in range(5):
        loop, polled = run(main(), idle_poll_time_us=100_000)
        if polled:
            break
    assert polled > 0  # completions were found by polling, not only by wake-ups
    if loop_kind == "asyncio":
        assert not isinstance(loop._selector, PollingSelector)  # restored when the reactor closed


def test_polling_still_sleeps_for_timers_when_idle(run):
    async def main():
        loop = asyncio.get_running_loop()
        t = loop.time()
        await asyncio.sleep(0.05)  # nothing in flight: the poller must let the loop block, not spin
        return loop.time() - t

    assert run(main(), idle_poll_time_us=1000) >= 0.049  # uvloop's clock counts in ms


def test_polling_is_on_by_default_and_zero_turns_it_off(run, loop_kind):
    async def main():
        return ioengine.get_reactor().polling

    assert ioengine.ReactorOptions().idle_poll_time_us > 0
    assert run(main()) == ("callback" if loop_kind == "uvloop" else "selector")
    assert run(main(), idle_poll_time_us=0) is None


def test_negative_poll_time_is_refused():
    with pytest.raises(ValueError, match="idle_poll_time_us must be >= 0"):
        ioengine.ReactorOptions(idle_poll_time_us=-1)


@pytest.mark.parametrize("alone, staged", [(4096, False), (1 << 20, True)])
def test_large_requests_are_submitted_alone_at_once(run, scratch, alone, staged):
    """A request of submit_alone_bytes or more reaches the kernel at the call, not at the end of
    the loop turn (so sequential requests are not merged into one device request)."""
    path = scratch / "f"

    async def main():
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            buf = f.allocate_buffer(8192)
            await f.dma_write(0, buf)
            r = ioengine.get_reactor()
            fut = f.read_future(0, buf)
            was_staged = r.staged > 0
            assert await fut == 8192
            return was_staged

    assert run(main(), submit_alone_bytes=alone) is staged


def test_a_wake_up_leaves_no_spurious_signal(run, scratch):
    """io_uring with deferred task work signals the eventfd again when it posts completions;
    the wake-up drains that too, so the loop is not woken once more for nothing (and the
    completions still all arrive: nothing is lost by draining after running the work)."""
    import select
    path = scratch / "f"

    async def main():
        backend = ioengine.get_reactor().backend
        if "TASKRUN_FLAG" not in backend.describe():
            pytest.skip(f"needs io_uring with DEFER_TASKRUN|TASKRUN_FLAG, got {backend.describe()}")
        spurious = 0
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            buf = f.allocate_buffer(4096)
            await f.dma_write(0, buf)
            for _ in range(200):
                await f.dma_read(0, buf)
                spurious += bool(select.select([backend.eventfd], [], [], 0)[0])
            # many at once, completing in batches: every one arrives
            bufs = [f.allocate_buffer(4096) for _ in range(64)]
            got = await asyncio.gather(*(f.dma_read(0, b) for b in bufs))
        return spurious, got

    spurious, got = run(main(), idle_poll_time_us=0)
    assert got == [4096] * 64
    assert spurious <= 10, f"{spurious} of 200 reads left the eventfd signalled after their wake-up"


def test_poll_wake_option_is_checked_and_used(run, scratch):
    with pytest.raises(ValueError, match="idle_poll_wake_us must be >= 0"):
        ioengine.ReactorOptions(idle_poll_wake_us=-1)
    path = scratch / "f"

    async def main():
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            b = f.allocate_buffer(4096)
            await f.dma_write(0, b)
            r = ioengine.get_reactor()
            # one request in the kernel: polled whatever the option says (until one is: on a
            # loaded machine a pool thread's completion can miss a few poll windows; the window
            # is widened below so that a slow disk's read still ends inside one)
            for _ in range(2000):
                await f.dma_read(0, b)
                if r.polled:
                    break
        return ioengine.get_reactor().polled

    assert run(main(), idle_poll_wake_us=0, idle_poll_time_us=20_000) > 0


@pytest.mark.parametrize("depth", [1, 2])
def test_two_requests_in_the_kernel_are_polled_up_to_the_poll_depth(run, scratch, depth):
    """With idle_poll_wake_us 0 (the gap rule never polls) two reads issued together are both
    found by polling only when idle_poll_depth covers two in the kernel; with depth 1 the first
    of the pair ends a sleep (the eventfd) and only the lone second may be polled."""
    with pytest.raises(ValueError, match="idle_poll_depth must be >= 0"):
        ioengine.ReactorOptions(idle_poll_depth=-1)
    path = scratch / "f"

    async def main():
        r = ioengine.get_reactor()
        both = 0
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            a, b = f.allocate_buffer(4096), f.allocate_buffer(4096)
            await f.dma_write(0, a)
            await f.dma_write(4096, b)
            # counted after a few ms of pairs: the completion rate the gap rule reads is
            # measured over 1 ms windows (until then it polls), and a task awaiting one request
            # resumes inside the reap that found it, before r.polled counts it
            t = time.monotonic()
            while time.monotonic() - t < 0.005:
                await asyncio.gather(f.read_future(0, a), f.read_future(4096, b))
            await asyncio.sleep(0)
            # a busy host can deschedule the loop past a poll window, and a read its cache serves
            # can complete within the submitting call (reaped by the flush, not polled): up to
            # 2,000 pairs, and with depth 2 one of them must have been polled whole
            for _ in range(2000):
                before = r.polled
                # staged in one turn, so both reach the kernel together (tasks of dma_read
                # would start a turn apart, and the first could be alone in the kernel a while)
                assert await asyncio.gather(f.read_future(0, a), f.read_future(4096, b)) == [4096, 4096]
                both += r.polled - before == 2
                if depth == 2 and both:
                    break
        return both

    both = run(main(), idle_poll_wake_us=0, idle_poll_depth=depth, idle_poll_hybrid=0,
               idle_poll_time_us=100_000)
    assert (both > 0) if depth == 2 else (both == 0)


def test_a_spinning_source_still_serves_sockets_and_checks_them_less_often(run, loop_kind):
    """While a source keeps the loop spinning, the other descriptors are still looked at (a
    socket's data arrives), but the zero-timeout select, a system call, runs at most every
    FD_CHECK_NS while the source's reap runs every time round."""
    import socket
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no selector to wrap (the reactor spins from a callback there)")

    from ioengine import poller

    async def main():
        loop = asyncio.get_running_loop()
        counts = {"reap": 0, "select": 0}

        def reap() -> bool:
            counts["reap"] += 1
            return False

        unpoll = poller.install(loop, 200_000, lambda: True, reap)
        wrapper = loop._selector
        inner = wrapper._inner
        real_select = inner.select

        def counting_select(timeout=None):
            counts["select"] += 1
            return real_select(timeout)

        a, b = socket.socketpair()
        got = loop.create_future()
        try:
            inner.select = counting_select
            loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(10)))
            loop.call_later(0.005, b.send, b"ping")
            data = await asyncio.wait_for(got, 5)
        finally:
            inner.select = real_select
            loop.remove_reader(a)
            a.close()
            b.close()
            unpoll()
        return data, counts

    data, counts = run(main(), idle_poll_time_us=0)
    assert data == b"ping"
    assert counts["reap"] > 2 * counts["select"] > 0, counts


def test_the_reactor_makes_no_system_call_to_poll_with_nothing_in_the_kernel(run, loop_kind):
    """Another poll source keeps the loop spinning while the reactor has no I/O in flight:
    the reactor's reap is a counter check, not a system call each time round."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no selector to wrap")
    from ioengine import poller

    async def main():
        loop = asyncio.get_running_loop()
        r = ioengine.get_reactor()
        calls = 0
        real_poll = r.backend.poll

        def counting_poll():
            nonlocal calls
            calls += 1
            return real_poll()

        spins = 0

        def reap() -> bool:
            nonlocal spins
            spins += 1
            return False

        r.backend.poll = counting_poll
        unpoll = poller.install(loop, 200_000, lambda: True, reap)
        try:
            await asyncio.sleep(0.01)
        finally:
            unpoll()
            del r.backend.poll
        return calls, spins

    calls, spins = run(main())
    assert spins > 0 and calls == 0, (calls, spins)


def test_a_source_with_bursts_sleeps_part_of_its_wait_then_spins(run, loop_kind):
    """A source whose completions come in bursts (``hybrid`` says so) gets its poll window
    started by a timed sleep: the fraction given of how long spins have recently waited for it
    (learnt), less the wake-up's lateness; then the spin finds the work as before. A source
    that says no spins at once, as it does while another source is busy (the sleep would not
    look at it); another source that is idle does not stop the sleep."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no selector to wrap")
    import time

    from ioengine import poller

    async def main(bursts: bool, second: bool | None):
        loop = asyncio.get_running_loop()
        due = [0]
        waiting: list[asyncio.Future] = []

        def reap() -> bool:
            if waiting and time.monotonic_ns() >= due[0]:
                waiting.pop().set_result(None)
                return True
            return False

        unpoll = poller.install(loop, 50_000, lambda: True, reap, hybrid=lambda: bursts, hybrid_fraction=0.9)
        unpoll2 = poller.install(loop, 50_000, lambda: second, lambda: False) if second is not None else None
        sel = loop._selector
        inner_wait = sel.wait_ns
        calls: list[int] = []

        def watch(epfd: int, ns: int) -> int:
            calls.append(ns)
            return inner_wait(epfd, ns)

        sel.wait_ns = watch
        try:
            for _ in range(6):  # each "completion" comes 2 ms after the loop starts waiting for it
                fut = loop.create_future()
                waiting.append(fut)
                due[0] = time.monotonic_ns() + 2_000_000
                await fut
        finally:
            sel.wait_ns = inner_wait
            if unpoll2 is not None:
                unpoll2()
            unpoll()
        return calls

    for second in (None, False):
        calls = run(main(True, second), idle_poll_time_us=0)
        # the first wait is learnt by spinning; the later ones start with a sleep of ~0.9 x 2 ms
        # (more where a stalled host made the learnt waits longer than the 2 ms gap: CI's loaded
        # host learnt 3-8 ms; still a fraction of the 50 ms poll window, not the window)
        assert len(calls) >= 4 and all(300_000 < ns < 10_000_000 for ns in calls), (second, calls)
    assert run(main(False, None), idle_poll_time_us=0) == []
    assert run(main(True, True), idle_poll_time_us=0) == []


def test_the_hybrid_fraction_is_checked():
    for bad in (-0.1, 1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"idle_poll_hybrid must be a number in \[0, 1\)"):
            ioengine.ReactorOptions(idle_poll_hybrid=bad)
    assert 0 < ioengine.ReactorOptions().idle_poll_hybrid < 1


def test_a_sleep_the_ring_ends_is_reaped_in_that_loop_turn(run, scratch, loop_kind):
    """With polling off the loop sleeps on the ring's eventfd. When the eventfd ends the sleep,
    the selector reaps the ring itself (as a spin does), so the woken task resumes in that loop
    turn; the eventfd's own callback, a turn later, runs only when that found nothing."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop has no selector to wrap")
    path = scratch / "f"

    async def main():
        loop = asyncio.get_running_loop()
        r = ioengine.get_reactor()
        assert isinstance(loop._selector, PollingSelector)
        callbacks = 0
        on_wakeup = r._on_wakeup

        def counted() -> None:
            nonlocal callbacks
            callbacks += 1
            on_wakeup()

        loop.add_reader(r.backend.eventfd, counted)  # the same callback, counted
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            b = f.allocate_buffer(4096)
            b[:] = b"x" * 4096
            await f.dma_write(0, b)
            n = 64
            woken0 = r.woken
            for _ in range(n):  # one at a time: the loop sleeps with each read in flight
                assert await f.dma_read(0, b) == 4096
                assert bytes(b) == b"x" * 4096
        return r.woken - woken0, callbacks, r.polled

    woken, callbacks, polled = run(main(), idle_poll_time_us=0)
    assert polled == 0  # no spinning
    assert woken > 0  # completions reaped where the sleep ended
    assert callbacks <= woken  # the eventfd's callback ran only for the wake-ups that found nothing


@pytest.mark.parametrize("how", ["sleeping", "spinning"])
def test_a_completion_resumes_the_task_in_the_callback_that_reaped_it(run, scratch, loop_kind, how):
    """Where no selector reaps (uvloop), the eventfd's callback after a sleep, and the spinner's
    while polling, deliver what they reap themselves: the awaiting task resumes inside them,
    not a loop turn later."""
    if loop_kind != "uvloop":
        pytest.skip("asyncio's loops reap in the selector (the test above)")
    import sys

    # A read the disk finishes within the submitting call itself (the host's cache of a block
    # just written) is reaped by the flush that submitted it: resumed there, no later (CI saw
    # every one of 32 sleeping reads resumed so on a loaded host).
    where = {"_on_wakeup", "_flush"} if how == "sleeping" else {"_spin", "_flush"}

    async def main():
        async with await ioengine.open_file_dma(scratch / "f", OpenFlags.RW | OpenFlags.CREATE) as f:
            b = f.allocate_buffer(4096)
            b[:] = b"y" * 4096
            await f.dma_write(0, b)
            inside = 0
            for _ in range(32):  # one at a time: the loop sleeps with each read in flight
                assert await f.dma_read(0, b) == 4096
                frame = sys._getframe()
                names = set()
                while frame is not None:
                    names.add(frame.f_code.co_name)
                    frame = frame.f_back
                inside += bool(where & names)
        return inside

    assert run(main(), idle_poll_time_us=0 if how == "sleeping" else 100_000) > 0
