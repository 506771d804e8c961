"""The page cache's fast path: a buffered read or write made at the call, without the ring.

A file opened buffered (``FileOpenOptions(buffered=True)``, or on a filesystem that refuses
O_DIRECT) reads what the page cache holds in about a microsecond of the kernel's time, as fio's
psync does; through the ring the same hit costs a loop turn before the awaiting task resumes.
So ``dma_read``, ``dma_write`` and ``read_future`` (the streams' reads) on such a file first try
the system call themselves, with ``RWF_NOWAIT``: the kernel serves it only if it can without
waiting (the pages are cached, the write needs no I/O), and says EAGAIN otherwise; the request
then takes the ring as any other. What comes back from a served request is already done.

Three rules keep it a fast path and nothing else:

* **No waiting.** Only ``RWF_NOWAIT`` calls, except for writes a file opts into with
  ``FileOpenOptions.blocking_buffered_writes`` on a filesystem that cannot take a buffered write
  without blocking (ext4 refuses ``RWF_NOWAIT`` for them, and io_uring hands each such write to a
  kernel worker thread): those are made at the call as a synchronous write is (fio's psync, or its
  libaio with ``direct=0``), which can block the reactor while the kernel throttles dirty pages.
* **The loop still turns.** Requests served at the call are counted per loop turn; past
  ``TURN_REQUESTS`` or ``TURN_BYTES`` the rest of the turn's requests take the ring, so a task
  reading from the cache in a loop lets timers and other tasks run (as Seastar's task quota does).
* **Misses cost little.** A file whose requests miss tries again only after a run of requests
  through the ring that doubles with each miss in a row (at most ``MAX_SKIP``), so a workload
  that never hits pays about one failed system call in ``MAX_SKIP`` requests.

Anything unusual -- another buffer type than DmaBuffer, a released buffer, a position the kernel
cannot take, a kernel error other than EAGAIN -- takes the ring, whose path checks and reports it
as for any request. A request served here uses no disk time, so the disk scheduler does not see
it; ``PageCache`` counts it. A fault injector (ioengine.testing) turns the path off, since it
changes requests on their way through the backend. File's C ``dma_read`` / ``dma_write`` make
the try themselves (native/filemethods.c: CachedSubmit's tests, calls and books, without its
Python frames); the methods here are the reference, and ``try_read`` is ``File.read_future``'s
path. ``tests/foundation/test_pagecache.py`` has the cases; ``scripts/fio_examples.py --compare
backwards-read.fio`` measures the gain against fio.
"""
from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Coroutine
from typing import Any

from ._dmabuf import DmaBuffer
from ._iopath import page_cache_requests
from ._native import lib
from .backends.base import OP_READ, OP_WRITE

#: Requests served at the call in one loop turn, and their bytes, before the rest take the ring.
TURN_REQUESTS = 64
TURN_BYTES = 1 << 20
#: The longest run of requests through the ring after misses in a row.
MAX_SKIP = 64

_EOPNOTSUPP = -errno.EOPNOTSUPP
_NOWAIT = os.RWF_NOWAIT
#: Positions above this take the ring (its path says what is wrong with them).
_POS_MAX = (1 << 63) - (1 << 32)
#: dma_read's and dma_write's tries in C (native/filemethods.c: CachedSubmit's tests, calls and
#: books without its Python frames); files made while this is False keep the Python path, the
#: reference (a test's spy on ``lib``).
NATIVE = True


async def _served(n: int) -> int:
    return n


class PageCache:
    """A reactor's budget of requests served at the call per loop turn, and their counts."""

    __slots__ = ("enabled", "requests_left", "bytes_left", "reads", "writes", "misses", "_loop", "_refill_due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: False while a fault injector stands between the reactor and its backend.
        self.enabled = True
        self.requests_left = TURN_REQUESTS
        self.bytes_left = TURN_BYTES
        #: Reads and writes served at the call; tries the kernel refused (EAGAIN, a short read).
        self.reads = 0
        self.writes = 0
        self.misses = 0
        self._loop = loop
        self._refill_due = False

    def take(self, n: int) -> None:
        """Count a served request of ``n`` bytes against this turn's budget."""
        self.requests_left -= 1
        self.bytes_left -= n
        if not self._refill_due:
            # call_soon from inside a turn runs in the next one: the budget is per turn.
            self._refill_due = True
            self._loop.call_soon(self._refill)

    def _refill(self) -> None:
        self._refill_due = False
        self.requests_left = TURN_REQUESTS
        self.bytes_left = TURN_BYTES

    def submitter(self, submit: Callable[..., Any], books: Any, blocking_writes: bool,
                  dsync: bool = False) -> CachedSubmit:
        """A buffered File's per-request call: tries the page cache, else ``submit`` (the reactor's).
        ``dsync``: the file was opened O_DSYNC/O_SYNC, so a write waits for the disk: never made here."""
        return CachedSubmit(self, submit, books, blocking_writes, dsync)


class CachedSubmit:
    """One buffered File's submit_request: the page cache first (see the module's doc)."""

    __slots__ = ("_cache", "_submit", "_books", "_blocking", "_write_flags", "_skip", "_miss_run", "_native")

    def __init__(self, cache: PageCache, submit: Callable[..., Any], books: Any, blocking_writes: bool,
                 dsync: bool = False) -> None:
        self._cache = cache
        self._submit = submit
        self._books = books
        #: RWF_NOWAIT until the filesystem refuses it for writes; then 0 if the file takes
        #: blocking writes at the call, else -1 (its writes take the ring).
        self._write_flags = -1 if dsync else _NOWAIT
        self._blocking = blocking_writes
        #: Per direction (read, write): requests left to send to the ring before the next try,
        #: and the misses in a row that set it.
        self._skip = [0, 0]
        self._miss_run = [0, 0]
        #: dma_read / dma_write try the cache in C (File's C methods read this slot; see NATIVE)
        self._native = NATIVE

    def __call__(self, op: int, fd: int, buf: Any, pos: int, disk_mask: int, mem_mask: int, opname: str,
                 owner: Any, on_done: Any, queue: Any, states: Any, io_class: Any) -> Coroutine[Any, Any, int] | None:
        if op == OP_READ:
            got = self.try_read(fd, buf, pos)
            if got is not None:
                return _served(got)
        elif op == OP_WRITE and self._write_flags >= 0 and self._books.straight and self._may_try(1, buf, pos):
            got = self._write(self._cache, fd, buf, pos)
            if got is not None:
                return _served(got)
        return self._submit(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, queue, states, io_class)

    def try_read(self, fd: int, buf: Any, pos: int) -> int | None:
        """The bytes read into ``buf`` at ``pos`` if the page cache served them now, else None
        (nothing happened: the caller takes the ring). For every buffered read (dma_read, and
        File.read_future for the streams): one frame, _may_try's tests and take inline, as a
        hit is a few microseconds and each Python call a good part of one
        (`QD=1 BUFFERED=1 FILE=.scratch/bench.dat scripts/icount.sh` counts a hit)."""
        cache = self._cache
        if not (cache.requests_left > 0 and cache.bytes_left > 0 and cache.enabled and isinstance(buf, DmaBuffer)
                and type(pos) is int and 0 <= pos < _POS_MAX):
            return None
        skip = self._skip
        if skip[0]:
            skip[0] -= 1
            return None
        if buf.released or not len(buf):  # nothing to read: the ring's path answers
            return None
        n = len(buf)
        # The export pins the memory while the GIL is dropped around the call (a release()
        # from another thread then waits for it, as for a request in the ring).
        with memoryview(buf):
            res = lib.ie_rw_now(fd, 0, buf.address, n, pos, _NOWAIT)
        if res == n and n:
            self._miss_run[0] = 0
            cache.reads += 1
            cache.requests_left -= 1  # take(n), inline
            cache.bytes_left -= n
            if not cache._refill_due:
                cache._refill_due = True
                cache._loop.call_soon(cache._refill)
            return n
        # EAGAIN, or a short read (part cached, or the end of the file: the ring says which),
        # or an error the ring's path reports
        self._missed(cache, 0, res)
        return None

    def _may_try(self, d: int, buf: Any, pos: int) -> bool:
        """Whether a write tries the page cache now (this turn's budget, a plain DmaBuffer and
        position, not backing off after misses); try_read makes the same tests for reads."""
        cache = self._cache
        if not (cache.requests_left > 0 and cache.bytes_left > 0 and cache.enabled and isinstance(buf, DmaBuffer)
                and type(pos) is int and 0 <= pos < _POS_MAX):
            return False
        skip = self._skip
        if skip[d]:
            skip[d] -= 1
            return False
        return True

    def _write(self, cache: PageCache, fd: int, buf: DmaBuffer, pos: int) -> int | None:
        if buf.released or not len(buf):
            return None
        n = len(buf)
        with memoryview(buf):  # pinned, as a read's
            res = lib.ie_rw_now(fd, 1, buf.address, n, pos, self._write_flags)
            if res == _EOPNOTSUPP and self._write_flags:
                # The filesystem cannot take a buffered write without blocking (ext4).
                self._write_flags = 0 if self._blocking else -1
                if self._write_flags < 0:
                    return None
                res = lib.ie_rw_now(fd, 1, buf.address, n, pos, 0)
        if res == n and n:
            self._miss_run[1] = 0
            end = pos + n
            books = self._books
            if end > books.known:  # as a completed write's books (SizeTracker: straight, not sloppy)
                books.known = end
            cache.writes += 1
            cache.take(n)
            return n
        self._missed(cache, 1, res)
        return None

    def _missed(self, cache: PageCache, d: int, res: int) -> None:
        cache.misses += 1
        if res == _EOPNOTSUPP:  # no RWF_NOWAIT for this file in this direction at all
            self._skip[d] = 1 << 62
            return
        run = self._miss_run[d] = min(self._miss_run[d] * 2 + 1, MAX_SKIP)
        self._skip[d] = run


page_cache_requests(CachedSubmit, PageCache, DmaBuffer, _POS_MAX)
