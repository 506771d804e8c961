"""The one interface every backend offers the reactor.

The reactor stages read/write/fsync requests as 5-word records (see native/ioengine_native.h)
in an ``array('Q')`` and hands the whole batch over once per loop turn; completions come back
as two parallel lists (user_data, result), result being a byte count or -errno.
"""
from __future__ import annotations

import abc
from array import array

from .._native import ffi, lib

REC_WORDS = lib.IE_REC_WORDS
OP_READ = lib.IE_OP_READ
OP_WRITE = lib.IE_OP_WRITE
OP_READV = lib.IE_OP_READV
OP_WRITEV = lib.IE_OP_WRITEV
OP_FSYNC = lib.IE_OP_FSYNC

#: Completions copied out of the kernel per native call.
REAP_BATCH = 1024


class Backend(abc.ABC):
    """How the reactor talks to the kernel."""

    #: Name as accepted by ReactorOptions.backend.
    name: str
    #: True when openat/statx/rename/unlink/mkdir/link/fsync/fallocate run as async kernel ops.
    kernel_fs_ops: bool = False

    def __init__(self, capacity: int) -> None:
        #: Most requests this backend may hold in flight.
        self.capacity = capacity
        fd = lib.ie_eventfd_create()
        if fd < 0:
            raise OSError(-fd, "eventfd() failed")
        #: Readable when completions may be waiting; the reactor registers it with the loop.
        self.eventfd = fd
        self._ud = ffi.new("uint64_t[]", REAP_BATCH)
        self._res = ffi.new("int32_t[]", REAP_BATCH)

    @abc.abstractmethod
    def flush(self, recs: array | memoryview) -> tuple[int, list[int], list[int]]:
        """Submit the staged records; return (records accepted, completed uds, their results).

        Records not accepted (the kernel was full) stay the caller's to retry next turn.
        """

    @abc.abstractmethod
    def reap(self) -> tuple[list[int], list[int]]:
        """Completions available now (called when the eventfd fires)."""

    def poll(self) -> tuple[list[int], list[int]]:
        """Completions available now, looked for without waiting (the idle poller's call)."""
        return self.reap()

    @abc.abstractmethod
    def wait_all(self, inflight: int) -> list[int]:
        """Block until ``inflight`` completions arrive; used only when shutting down."""

    def native_submit(self) -> tuple[int, int] | None:
        """(ring address, address of the native submit-and-reap) when the reactor's per-request
        path (IoPath.set_ring) may submit through this backend in C, the same call as flush();
        None: every submission goes through flush()."""
        return None

    def native_reap(self) -> tuple[int, int] | None:
        """(address of the native poll, of the native reap after a wake-up) for the ring that
        native_submit() gives: the reactor's reaps then take one C call (IoPath.set_reap), the
        same calls as poll() and reap(); None: they go through poll() and reap()."""
        return None

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        import os

        if self.eventfd >= 0:
            os.close(self.eventfd)
            self.eventfd = -1

    def _unpack(self, n: int) -> tuple[list[int], list[int]]:
        if n <= 0:
            return [], []
        return ffi.unpack(self._ud, n), ffi.unpack(self._res, n)
