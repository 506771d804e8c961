"""Thread-pool backend: pread/pwrite/preadv/pwritev on worker threads, for hosts without io_uring or aio."""
from __future__ import annotations

import collections
import threading
from array import array
from concurrent.futures import ThreadPoolExecutor

from .._native import ffi, lib
from .base import REC_WORDS, Backend


class ThreadsBackend(Backend):
    name = "threads"

    def __init__(self, entries: int, threads: int) -> None:
        super().__init__(capacity=entries)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ioengine-io")
        self._workers = threads
        self._done: collections.deque[tuple[int, int]] = collections.deque()
        self._outstanding = 0
        self._cv = threading.Condition()

    def describe(self) -> str:
        return f"threads ({self._workers} workers)"

    def _work(self, rec: bytes) -> None:
        buf = ffi.from_buffer("uint64_t[]", rec)
        res = lib.ie_rw_sync(buf)  # the GIL is released inside
        self._done.append((buf[4], res))
        # Signal every completion: an "only on the first" edge test races between workers and
        # can leave completions unseen. The reaper's one read clears any number of signals.
        lib.ie_eventfd_signal(self.eventfd)

    def flush(self, recs: array | memoryview) -> tuple[int, list[int], list[int]]:
        n = len(recs) // REC_WORDS
        raw = recs.tobytes()
        step = REC_WORDS * 8
        submit = self._pool.submit
        for i in range(n):
            submit(self._work, raw[i * step:(i + 1) * step])
        return n, [], []

    def reap(self) -> tuple[list[int], list[int]]:
        lib.ie_eventfd_drain(self.eventfd)
        uds: list[int] = []
        res: list[int] = []
        done = self._done
        while done:
            u, r = done.popleft()
            uds.append(u)
            res.append(r)
        return uds, res

    def wait_all(self, inflight: int) -> list[int]:
        self._pool.shutdown(wait=True)
        return self.reap()[0]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        super().close()
