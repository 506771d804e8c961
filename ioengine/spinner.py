"""Idle polling for loops whose selector cannot be wrapped (uvloop): a callback that re-queues itself.

ioengine.poller wraps the selector of asyncio's own loops. uvloop (libuv) has none to wrap, and
no idle hook; but a loop with a ready callback does not block: it looks at its descriptors with a
zero timeout and runs the callback. So while I/O is in flight, ``Spinner`` keeps one callback
queued that reaps completions straight from the ring; completions found refresh the poll window,
and when the window passes with nothing the callback stops and the loop sleeps on the eventfd as
usual. The reactor kicks it after each submission.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Spinner:
    """Polls ``reap`` from a self-requeuing callback while ``worth`` says so, up to ``poll_us``
    without finding anything."""

    __slots__ = ("_loop", "_poll_ns", "_worth", "_reap", "_active", "_deadline", "_closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, poll_us: int, worth: Callable[[], bool],
                 reap: Callable[[], bool]) -> None:
        self._loop = loop
        self._poll_ns = poll_us * 1000
        self._worth = worth  # I/O in flight and polling pays (see Reactor._worth_polling)
        self._reap = reap  # completes what the ring has; True if it found anything
        self._active = False
        self._deadline = 0
        self._closed = False

    def kick(self) -> None:
        """Start polling (if not already): called after requests were handed to the kernel."""
        if not self._active and not self._closed:
            self._active = True
            self._deadline = time.monotonic_ns() + self._poll_ns
            self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        if self._closed or not self._worth():
            self._active = False
            return
        if self._reap():
            self._deadline = time.monotonic_ns() + self._poll_ns  # completions keep coming: go on
        elif time.monotonic_ns() >= self._deadline:
            self._active = False  # the window passed: sleep on the eventfd
            return
        self._loop.call_soon(self._spin)

    def close(self) -> None:
        self._closed = True
