"""Precise timers (ReactorOptions.precise_timers): the loop waits for a sub-millisecond timer
with a nanosecond timeout (epoll_pwait2), not asyncio's whole milliseconds."""
from __future__ import annotations

import asyncio
import errno
import os
import select

import pytest

import ioengine
from ioengine import poller
from ioengine._native import lib


def _slack() -> int:
    return lib.ie_timer_slack_ns(0)  # 0: only read it


def test_epoll_wait_ns_on_the_real_kernel():
    ep = select.epoll()
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        ep.register(efd, select.EPOLLIN)
        assert lib.ie_epoll_wait_ns(ep.fileno(), 1000) == 0  # nothing ready: the timeout
        os.eventfd_write(efd, 1)
        assert lib.ie_epoll_wait_ns(ep.fileno(), 10**9) == 1
        # level-triggered: the event is still there for the selector's own select
        assert [fd for fd, _ in ep.poll(0)] == [efd]
        assert lib.ie_epoll_wait_ns(-1, 0) == -errno.EBADF
    finally:
        ep.close()
        os.close(efd)


def test_timer_slack_is_set_for_the_loop_and_restored(run, loop_kind):
    before = _slack()

    async def main():
        return ioengine.get_reactor().precise_timers, _slack()

    precise, inside = run(main())
    if loop_kind == "uvloop":  # libuv's timers: nothing to wrap, nothing changed
        assert (precise, inside) == (False, before)
    else:
        assert (precise, inside) == (True, poller.PRECISE_SLACK_NS)
    assert _slack() == before
    assert run(main(), precise_timers=False) == (False, before)


@pytest.mark.parametrize("poll_us", [0, 200])
def test_a_sub_millisecond_sleep_wakes_from_the_nanosecond_wait(run, loop_kind, poll_us):
    if loop_kind == "uvloop":
        pytest.skip("uvloop's timers are libuv's milliseconds (documented)")

    async def main():
        loop = asyncio.get_running_loop()
        sel = loop._selector
        assert isinstance(sel, poller.PollingSelector) and sel.precise
        calls: list[tuple[int, int]] = []
        inner = sel.wait_ns

        def watch(epfd: int, ns: int) -> int:
            n = inner(epfd, ns)
            calls.append((ns, n))
            return n

        sel.wait_ns = watch
        try:
            for _ in range(5):
                t = loop.time()
                await asyncio.sleep(0.0003)
                assert loop.time() >= t + 0.0003
        finally:
            sel.wait_ns = inner
        return calls

    calls = run(main(), idle_poll_time_us=poll_us)
    # Each sleep's timeout reached the kernel in nanoseconds, not rounded up to 1 ms, and the
    # waits ended by timing out (0 ready): the timer, not some descriptor, woke the loop. A
    # signal may cut a wait short (-EINTR, seen on a loaded host): the loop then waits out the
    # rest (a shorter wait right after it), or spins it, so such a sleep is left out.
    eintr = [i for i, (_, n) in enumerate(calls) if n == -errno.EINTR]
    rest = {i + 1 for i in eintr if i + 1 < len(calls) and calls[i + 1][0] < calls[i][0]}
    calls = [c for i, c in enumerate(calls) if i not in rest and c[1] != -errno.EINTR]
    assert len(calls) >= 5 - 2 * len(eintr) and all(n == 0 for _, n in calls), calls
    if poll_us:  # the wait ends early by the learnt wake-up and the rest is spun
        assert all(0 < ns < 300_000 for ns, _ in calls), calls
    else:  # no polling: the timeout is slept whole (what the loop took to get there aside: on a
        # loaded host tens of µs)
        assert all(150_000 < ns <= 300_000 for ns, _ in calls), calls


def test_a_precise_wait_still_wakes_for_completions(run, loop_kind, scratch):
    if loop_kind == "uvloop":
        pytest.skip("uvloop's timers are libuv's milliseconds (documented)")
    path = scratch / "f"

    async def main():
        loop = asyncio.get_running_loop()
        sel = loop._selector
        calls: list[tuple[int, int]] = []
        inner = sel.wait_ns

        def watch(epfd: int, ns: int) -> int:
            n = inner(epfd, ns)
            calls.append((ns, n))
            return n

        far = loop.call_later(30.0005, lambda: None)  # the loop's next timer: far, not whole ms
        async with await ioengine.open_file_dma(path, ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE) as f:
            b = f.allocate_buffer(1 << 20)
            b[:] = b"x" * (1 << 20)
            sel.wait_ns = watch
            try:
                await f.dma_write(0, b)
                # A small read the host serves from its cache can complete before the loop goes
                # to sleep (then it never waits): 1 MiB reads, until one made it wait.
                for _ in range(50):
                    got = await f.dma_read_exactly(0, 1 << 20)
                    if any(ns > 10**9 and n == 1 for ns, n in calls):
                        break
            finally:
                sel.wait_ns = inner
        far.cancel()
        return calls, bytes(got)

    calls, got = run(main(), idle_poll_time_us=0)
    assert got == b"x" * (1 << 20)
    # The loop slept towards the far timer, and a descriptor (the completion's eventfd, or a
    # worker thread's wake-up) ended the wait, not its timeout.
    assert any(ns > 10**9 and n == 1 for ns, n in calls), calls


def test_without_epoll_pwait2_the_loop_keeps_asyncios_waits(run, loop_kind, caplog):
    """A kernel before 5.11 answers ENOSYS: the wrapper says so once (info), stops waiting
    precisely and the sleep still ends, through the selector's own millisecond wait."""
    if loop_kind == "uvloop":
        pytest.skip("uvloop's timers are libuv's milliseconds (documented)")

    async def main():
        loop = asyncio.get_running_loop()
        sel = loop._selector
        calls: list[int] = []

        def old_kernel(epfd: int, ns: int) -> int:
            calls.append(ns)
            return -errno.ENOSYS

        sel.wait_ns = old_kernel
        t = loop.time()
        await asyncio.sleep(0.0003)
        await asyncio.sleep(0.0003)
        return loop.time() - t, calls, sel.precise, ioengine.get_reactor().precise_timers

    with caplog.at_level("INFO", logger="ioengine.poller"):
        slept, calls, precise, reported = run(main(), idle_poll_time_us=0)
    assert slept >= 0.0006
    assert len(calls) == 1  # asked once, then never again
    assert not precise and not reported
    assert sum("epoll_pwait2 needs Linux 5.11" in r.getMessage() for r in caplog.records) == 1
