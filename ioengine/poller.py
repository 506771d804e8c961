"""Idle polling: spin on the loop's selector for a while before it sleeps with work in flight.

A thread that sleeps in epoll_wait and is woken by the completion's eventfd pays a scheduler
wake-up (tens of microseconds on a VM) on every I/O when few are in flight; Seastar's reactor
polls for ``idle_poll_time_us`` before it sleeps for the same reason. asyncio has no hook for
this, so the selector of a selector-based loop is wrapped: when the loop would block and a
source has work in flight, the wrapper reaps completions straight from the source (the
callbacks they schedule make the loop run at once, without the eventfd's round trip), with a
zero-timeout select for the loop's other file descriptors every FD_CHECK_NS, until one of them
gives something or the poll time is spent; then it blocks as usual.

Several sources may register with one wrapper (the reactor's ring; the cross-shard message
rings of ioengine.smp). A source may also ask to be polled on every loop turn (``each_turn``:
shared-memory rings raise no file descriptor while their consumer is awake) and to be told
before the loop blocks and after it wakes (``sleep`` / ``awake``: a consumer declares it is
going to sleep, so producers know to wake it), and may name the descriptor that wakes the loop
for it (``fd``, ``on_fd``): when a sleep ends on that descriptor, the wrapper reaps the source
itself, as a spin does, so what completed runs in that loop turn rather than after the
descriptor's callback in the next. With the reactor alone the wrapper behaves as it always did.
"""
from __future__ import annotations

import errno
import logging
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

from ._native import lib

log = logging.getLogger(__name__)

#: The most a timed wait is expected to return late (a wake-up on a busy VM); beyond it the
#: estimate stops growing, so the spin before a timer stays bounded.
_MAX_LATE_NS = 200_000
#: The timer slack (ns) of a thread whose loop waits precisely: the kernel stretches every timed
#: sleep by the thread's slack (50 µs by default) to batch wake-ups.
PRECISE_SLACK_NS = 1000
#: While spinning, the loop's file descriptors are looked at (one zero-timeout select, a
#: system call) at most this often; the sources' reaps (memory, or one call each) every time
#: round. `ioengine-bench smp` shows the round trip it buys.
FD_CHECK_NS = 4000
#: The shortest hybrid sleep worth a timed wait's wake-up (see PollingSelector.select).
HYBRID_MIN_SLEEP_NS = 30_000


class PollSource:
    """One thing the wrapper polls; see the module docstring for the hooks."""

    __slots__ = ("poll_ns", "busy", "reap", "each_turn", "sleep", "awake", "precise", "hybrid", "hybrid_fraction",
                 "fd", "on_fd")

    def __init__(self, poll_us: int, busy: Callable[[], bool], reap: Callable[[], bool],
                 each_turn: Callable[[], bool] | None = None, sleep: Callable[[], bool] | None = None,
                 awake: Callable[[], None] | None = None, precise: bool = False,
                 hybrid: Callable[[], bool] | None = None, hybrid_fraction: float = 0.0,
                 fd: int | None = None, on_fd: Callable[[], bool] | None = None) -> None:
        self.poll_ns = max(0, poll_us) * 1000
        self.busy = busy
        self.reap = reap  # completes what the source has; True if it found anything
        self.each_turn = each_turn  # like reap, called on every select (also timeout 0)
        self.sleep = sleep  # before blocking: True if work arrived meanwhile (then do not block)
        self.awake = awake  # after blocking
        self.precise = precise  # waits to the nanosecond (see the module docstring)
        #: True when sleeping part of the wait before spinning is worth it (see PollingSelector.select)
        self.hybrid = hybrid if hybrid_fraction > 0 else None
        self.hybrid_fraction = hybrid_fraction
        #: The descriptor that wakes the loop for this source (the ring's eventfd), and what to
        #: call when a sleep ends on it: reaps at once, as a spin would; True if it found work
        #: (then the descriptor's event is left out, see PollingSelector._woken).
        self.fd = fd
        self.on_fd = on_fd


class PollingSelector(selectors.BaseSelector):
    """Delegates to the loop's own selector; only ``select`` changes."""

    __slots__ = ("_inner", "_poll_ns", "_busy", "_reap", "_sources", "_each_turn", "_sleepers", "_epfd",
                 "_precise", "_late_ns", "wait_ns", "_hybrid", "_hybrid_fraction", "_idle_ns", "_others_busy",
                 "_fd_reaps")

    def __init__(self, inner: selectors.BaseSelector, poll_us: int, busy: Callable[[], bool],
                 reap: Callable[[], bool]) -> None:
        self._inner = inner
        self._sources: list[PollSource] = []
        # Precise waits need the epoll descriptor (EpollSelector's fileno()); other selectors
        # keep their own waits.
        self._epfd = inner.fileno() if isinstance(inner, selectors.EpollSelector) else -1
        self._precise = False
        self._late_ns = 20_000  # how late a timed wait returns (learnt; see _wait)
        #: The nanosecond wait (an attribute, so a test can watch what it is asked for).
        self.wait_ns: Callable[[int, int], int] = lib.ie_epoll_wait_ns
        self._idle_ns = 0  # how long a spin recently waited for its source (learnt; see select)
        self.add_source(PollSource(poll_us, busy, reap))

    # -- sources: the hot attributes are recomputed when the set changes ------------------

    def add_source(self, source: PollSource) -> None:
        self._sources.append(source)
        self._recompute()

    def remove_source(self, source: PollSource) -> bool:
        """Forget ``source``; True if none is left (the wrapper may go)."""
        if source in self._sources:
            self._sources.remove(source)
        self._recompute()
        return not self._sources

    def _recompute(self) -> None:
        srcs = [s for s in self._sources if s.poll_ns > 0]
        self._poll_ns = max((s.poll_ns for s in srcs), default=0)
        if len(srcs) == 1:  # the reactor alone: its own callables, no indirection
            self._busy, self._reap = srcs[0].busy, srcs[0].reap
        else:
            busies = tuple(s.busy for s in srcs)
            reaps = tuple(s.reap for s in srcs)

            def busy() -> bool:
                for b in busies:
                    if b():
                        return True
                return False

            def reap() -> bool:
                got = False
                for r in reaps:
                    if r():
                        got = True
                return got

            self._busy, self._reap = busy, reap
        each = tuple(s.each_turn for s in self._sources if s.each_turn is not None)
        if not each:
            self._each_turn = None
        elif len(each) == 1:
            self._each_turn = each[0]
        else:
            def each_turn() -> bool:
                got = False
                for e in each:
                    if e():
                        got = True
                return got

            self._each_turn = each_turn
        self._sleepers = tuple(s for s in self._sources if s.sleep is not None or s.awake is not None)
        self._precise = self._epfd >= 0 and any(s.precise for s in self._sources)
        self._fd_reaps = {s.fd: s.on_fd for s in self._sources if s.fd is not None and s.on_fd is not None}
        # The hybrid sleep is the first source's that has one, taken only while no other source
        # is busy (the cross-shard rings are not looked at during it).
        with_hybrid = [s for s in srcs if s.hybrid is not None]
        self._hybrid = with_hybrid[0].hybrid if with_hybrid else None
        self._hybrid_fraction = with_hybrid[0].hybrid_fraction if with_hybrid else 0.0
        self._others_busy = tuple(s.busy for s in srcs if s is not with_hybrid[0]) if with_hybrid else ()

    @property
    def precise(self) -> bool:
        """Whether timeouts are waited to the nanosecond (a source asked, and the selector is epoll)."""
        return self._precise

    def _wait(self, timeout: float | None) -> list:
        """The inner selector's select, but a timeout is waited to the nanosecond; with polling
        on, the wait ends early by what a timed wait has been returning late (the VM's wake-up,
        learnt here) and the rest is spun, so the timer fires when it is due."""
        inner = self._inner
        if not self._precise or timeout is None or timeout <= 0:
            return inner.select(timeout)
        clock = time.monotonic_ns
        t = clock()
        ns = int(timeout * 1e9)
        poll = self._poll_ns
        lead = self._late_ns if self._late_ns < poll else poll
        sleep = ns - lead
        if sleep > 0:
            n = self._timed_wait(sleep)
            if n > 0:
                return inner.select(0)
            if n < 0:
                if n == -errno.EINTR:
                    return []  # the loop looks at its signals and timers and calls again
                return inner.select(max(0.0, (t + ns - clock()) / 1e9))
        if poll:
            deadline = t + ns
            while clock() < deadline:
                ready = inner.select(0)
                if ready:
                    return ready
        return []

    def _learn(self, idle: int) -> None:
        """A spin (or a hybrid sleep) ended with work after ``idle`` ns: the estimate moves 1/8 of the way."""
        est = self._idle_ns
        self._idle_ns = idle if not est else est + (idle - est) // 8

    def _timed_wait(self, ns: int) -> int:
        """epoll_pwait2 for ``ns``: the ready count, or -errno. A wait that timed out teaches
        how late timed waits return (up fast, down slowly: the estimate tracks the late end of
        the wake-ups, not their mean); ENOSYS turns nanosecond waits off, said once."""
        t = time.monotonic_ns()
        n = self.wait_ns(self._epfd, ns)
        if n == 0:
            late = time.monotonic_ns() - t - ns
            late = late if late < _MAX_LATE_NS else _MAX_LATE_NS
            est = self._late_ns
            self._late_ns = est + (late - est) // 4 if late > est else est - (est - late) // 32
        elif n == -errno.ENOSYS:
            log.info("ioengine: precise timers unavailable (epoll_pwait2 needs Linux 5.11+)")
            self._precise = False
            self._epfd = -1
        return n

    # -- select ----------------------------------------------------------------------------

    def select(self, timeout: float | None = None) -> list:
        inner = self._inner
        each = self._each_turn
        if each is not None and each() and timeout != 0:
            return inner.select(0)  # callbacks are queued: the loop runs them now
        if timeout == 0:
            return inner.select(0)
        if self._poll_ns and self._busy():
            clock = time.monotonic_ns
            budget = self._poll_ns if timeout is None else min(self._poll_ns, int(timeout * 1e9))
            now = clock()
            start = now
            slept = 0
            hybrid = self._hybrid
            if hybrid is not None and self._epfd >= 0 and hybrid() and not any(b() for b in self._others_busy):
                # Several requests in flight (the source says): completions come in bursts, and
                # spinning the whole gap between them buys nothing. Sleep the first part of how
                # long spins have recently waited (less what a timed wait returns late); the
                # eventfd still ends the sleep if a completion comes first. Then spin as usual.
                pre = int(self._idle_ns * self._hybrid_fraction) - self._late_ns
                if pre >= HYBRID_MIN_SLEEP_NS:
                    slept = pre if pre < budget else budget
                    if not self._declare_sleep():
                        return inner.select(0)  # a source had work after all
                    try:
                        n = self._timed_wait(slept)
                    finally:
                        self._end_sleep()
                    if n > 0:
                        self._learn(clock() - start)
                        return self._woken(inner.select(0))
                    if n == -errno.EINTR:
                        return []
                    now = clock()
            deadline = start + budget  # a hybrid sleep is part of the poll window, not added to it
            fds_due = now
            reap = self._reap
            while True:
                if reap():
                    # Work found at once after a sleep may have come during it (a late wake-up
                    # must not teach a longer wait): learn what was slept, the estimate drifts down.
                    self._learn(slept if slept else clock() - start)
                    return []  # callbacks are queued: the loop runs them now
                slept = 0
                # The descriptors (a system call) every FD_CHECK_NS, the sources every time
                # round: a message or a completion is seen sooner, a socket at most that late.
                now = clock()
                if now >= fds_due:
                    ready = inner.select(0)
                    if ready:
                        return ready
                    if now >= deadline:
                        break
                    fds_due = now + FD_CHECK_NS
            if timeout is not None:
                timeout = max(0.0, timeout - budget / 1e9)
        if not self._sleepers:
            return self._woken(self._wait(timeout))
        if not self._declare_sleep():
            return inner.select(0)
        try:
            ready = self._wait(timeout)
        finally:
            self._end_sleep()
        return self._woken(ready)

    def _woken(self, ready: list) -> list:
        """After a wait: a source whose descriptor is among ``ready`` is reaped here, as a spin
        reaps it, so what it completes runs in this loop turn; its descriptor's callback (a
        drain and a reap of its own, queuing the work for the turn after) is then left out.
        With nothing found (a spurious wake-up) the callback runs as usual."""
        reaps = self._fd_reaps
        if not ready or not reaps:
            return ready
        for key, _ in ready:
            reap = reaps.get(key.fd)
            if reap is not None and reap():
                fd = key.fd
                return [r for r in ready if r[0].fd != fd]
        return ready

    def _declare_sleep(self) -> bool:
        """Tell the sources the loop is about to block (their ``sleep`` hooks); False when one
        had work after all (those already told are told it is awake, the work is read)."""
        declared: list[PollSource] = []
        for s in self._sleepers:
            if s.sleep is not None:
                if s.sleep():  # work arrived after the last look: stay up
                    for d in declared:
                        if d.awake is not None:
                            d.awake()
                    if s.each_turn is not None:
                        s.each_turn()
                    return False
                declared.append(s)
        return True

    def _end_sleep(self) -> None:
        for s in self._sleepers:
            if s.awake is not None:
                s.awake()

    # The rest is the inner selector's.
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:  # e.g. fileno() of epoll/kqueue selectors
        return getattr(self._inner, name)


def waits_precisely(loop: Any) -> bool:
    """Whether ``loop``'s selector is wrapped and waits to the nanosecond (see PollingSelector)."""
    sel = getattr(loop, "_selector", None)
    return isinstance(sel, PollingSelector) and sel.precise


def install(loop: Any, poll_us: int, busy: Callable[[], bool], reap: Callable[[], bool], *,
            each_turn: Callable[[], bool] | None = None, sleep: Callable[[], bool] | None = None,
            awake: Callable[[], None] | None = None, precise: bool = False,
            hybrid: Callable[[], bool] | None = None, hybrid_fraction: float = 0.0,
            fd: int | None = None, on_fd: Callable[[], bool] | None = None) -> Callable[[], None] | None:
    """Register a poll source with ``loop``'s selector (wrapping it if needed); returns a function
    that unregisters it, restoring the selector with the last source (None if not possible).

    A source without hooks, with ``poll_us`` <= 0 and not ``precise`` needs nothing: None.
    ``fd`` and ``on_fd``: the descriptor that wakes the loop for the source, and its reap when a
    sleep ends on it (see PollingSelector._woken).
    ``precise`` also sets the calling thread's timer slack to PRECISE_SLACK_NS (call it in the
    loop's thread; the restore puts the old slack back, from the same thread).
    """
    inner = getattr(loop, "_selector", None)
    hooks = each_turn is not None or sleep is not None or awake is not None
    if poll_us <= 0 and not hooks and not precise:
        return None
    source = PollSource(poll_us, busy, reap, each_turn, sleep, awake, precise, hybrid, hybrid_fraction, fd, on_fd)
    if isinstance(inner, PollingSelector):
        wrapper = inner
        wrapper.add_source(source)
        inner = wrapper._inner
    elif isinstance(inner, selectors.BaseSelector):
        wrapper = PollingSelector(inner, poll_us, busy, reap)
        wrapper._sources[0] = source
        wrapper._recompute()
        loop._selector = wrapper
    else:
        log.info("ioengine: idle polling ignored: %s has no selector to wrap", type(loop).__name__)
        return None
    slack: tuple[int, int] | None = None
    if precise and wrapper.precise:
        old = lib.ie_timer_slack_ns(PRECISE_SLACK_NS)
        if old >= 0:
            slack = (old, threading.get_ident())

    def restore() -> None:
        if wrapper.remove_source(source) and loop._selector is wrapper:
            loop._selector = inner
        if slack is not None and slack[1] == threading.get_ident():
            lib.ie_timer_slack_ns(slack[0])

    return restore
