"""Idle polling: spin on the loop's selector for a while before it sleeps with I/O in flight.

A thread that sleeps in epoll_wait and is woken by the completion's eventfd pays a scheduler
wake-up (tens of microseconds on a VM) on every I/O when few are in flight; Seastar's reactor
polls for ``idle_poll_time_us`` before it sleeps for the same reason. asyncio has no hook for
this, so the selector of a selector-based loop is wrapped: when the loop would block and the
reactor has I/O in the kernel, the wrapper alternates between reaping completions straight from
the ring (the callbacks they schedule make the loop run at once, without the eventfd's round
trip) and a zero-timeout select for the loop's other file descriptors, until one of them gives
something or the poll time is spent; then it blocks as usual.
"""
from __future__ import annotations

import logging
import selectors
import time
from typing import Any, Callable

log = logging.getLogger("ioengine.reactor")


class PollingSelector(selectors.BaseSelector):
    """Delegates to the loop's own selector; only ``select`` with a non-zero timeout changes."""

    __slots__ = ("_inner", "_poll_ns", "_busy", "_reap")

    def __init__(self, inner: selectors.BaseSelector, poll_us: int, busy: Callable[[], bool],
                 reap: Callable[[], bool]) -> None:
        self._inner = inner
        self._poll_ns = poll_us * 1000
        self._busy = busy
        self._reap = reap  # completes what the ring has; True if it found anything

    def select(self, timeout: float | None = None) -> list:
        inner = self._inner
        if timeout == 0 or not self._busy():
            return inner.select(timeout)
        clock = time.monotonic_ns
        budget = self._poll_ns if timeout is None else min(self._poll_ns, int(timeout * 1e9))
        deadline = clock() + budget
        reap = self._reap
        while True:
            if reap():
                return []  # callbacks are queued: the loop runs them now
            ready = inner.select(0)
            if ready:
                return ready
            if clock() >= deadline:
                break
        if timeout is not None:
            timeout = max(0.0, timeout - budget / 1e9)
        return inner.select(timeout)

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


def install(loop: Any, poll_us: int, busy: Callable[[], bool],
            reap: Callable[[], bool]) -> Callable[[], None] | None:
    """Wrap ``loop``'s selector; returns a function that restores it (None if not possible)."""
    inner = getattr(loop, "_selector", None)
    if poll_us <= 0 or not isinstance(inner, selectors.BaseSelector) or isinstance(inner, PollingSelector):
        if poll_us > 0 and not isinstance(inner, PollingSelector):
            log.info("ioengine: idle_poll_time_us ignored: %s has no selector to wrap", type(loop).__name__)
        return None
    loop._selector = PollingSelector(inner, poll_us, busy, reap)

    def restore() -> None:
        if loop._selector.__class__ is PollingSelector:
            loop._selector = inner

    return restore
