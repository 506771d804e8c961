"""io_uring backend: batched SQEs, one io_uring_enter per reactor turn, completions via eventfd."""
from __future__ import annotations

import errno
from array import array

from .._native import ffi, lib
from ..errors import BackendUnavailableError
from .base import REAP_BATCH, REC_WORDS, Backend

_FLAG_NAMES = {
    1 << 8: "COOP_TASKRUN",
    1 << 9: "TASKRUN_FLAG",
    1 << 7: "SUBMIT_ALL",
    1 << 12: "SINGLE_ISSUER",
    1 << 13: "DEFER_TASKRUN",
}
_ALL_FLAGS = 0xFFFFFFFF
_NO_TASKRUN = ~((1 << 8) | (1 << 9) | (1 << 12) | (1 << 13)) & 0xFFFFFFFF


def _unavailable(err: int) -> BackendUnavailableError:
    if err == errno.ENOSYS:
        why = ("io_uring_setup returned ENOSYS: the kernel lacks io_uring or a seccomp filter (container runtime)"
               " blocks it")
    elif err == errno.EPERM:
        try:
            with open("/proc/sys/kernel/io_uring_disabled") as f:
                val = f.read().strip()
        except OSError:
            val = "?"
        why = f"io_uring_setup returned EPERM: io_uring is disabled by sysctl kernel.io_uring_disabled={val}"
    elif err == errno.ENOMEM:
        why = "io_uring_setup returned ENOMEM: locked-memory limit (ulimit -l) too low for the ring"
    else:
        why = f"io_uring_setup failed with {errno.errorcode.get(err, err)}"
    return BackendUnavailableError(err, why)


class UringBackend(Backend):
    name = "io_uring"
    kernel_fs_ops = True

    def __init__(self, entries: int, taskrun_flags: bool = True) -> None:
        out = ffi.new("struct ie_uring **")
        used = ffi.new("unsigned *")
        ret = lib.ie_uring_create(entries, _ALL_FLAGS if taskrun_flags else _NO_TASKRUN, out, used)
        if ret < 0:
            raise _unavailable(-ret)
        self.ring = out[0]
        self.setup_flags = used[0]
        try:
            super().__init__(capacity=entries)
        except BaseException:
            lib.ie_uring_destroy(self.ring)
            raise
        ret = lib.ie_uring_register_eventfd(self.ring, self.eventfd)
        if ret < 0:
            self.close()
            raise BackendUnavailableError(-ret, "io_uring_register_eventfd failed")
        self._accepted = ffi.new("int *")

    def describe(self) -> str:
        flags = [n for bit, n in sorted(_FLAG_NAMES.items()) if self.setup_flags & bit]
        return f"io_uring ({'|'.join(flags) or 'no setup flags'})"

    def flush(self, recs: array | memoryview) -> tuple[int, list[int], list[int]]:
        n = len(recs) // REC_WORDS
        ptr = ffi.from_buffer("uint64_t[]", recs) if n else ffi.NULL
        got = lib.ie_uring_submit_reap(self.ring, ptr, n, self._accepted, self._ud, self._res, REAP_BATCH,
                                       self.eventfd)
        if got < 0:
            raise OSError(-got, "io_uring_enter failed")
        return (self._accepted[0] if n else 0), *self._unpack(got)

    def native_submit(self) -> tuple[int, int] | None:
        """(ring address, address of ie_uring_submit_reap): what IoPath.set_ring takes to make
        the submission in C, the same call as flush() (None once closed)."""
        if self.ring is None:
            return None
        return (int(ffi.cast("uintptr_t", self.ring)),
                int(ffi.cast("uintptr_t", ffi.addressof(lib, "ie_uring_submit_reap"))))

    def native_reap(self) -> tuple[int, int] | None:
        """(address of ie_uring_poll, of ie_uring_reap_woken): poll() and reap() in C, for
        IoPath.set_reap (None once closed)."""
        if self.ring is None:
            return None
        return (int(ffi.cast("uintptr_t", ffi.addressof(lib, "ie_uring_poll"))),
                int(ffi.cast("uintptr_t", ffi.addressof(lib, "ie_uring_reap_woken"))))

    def reap(self) -> tuple[list[int], list[int]]:
        got = lib.ie_uring_reap_woken(self.ring, self.eventfd, self._ud, self._res, REAP_BATCH)
        if got < 0:
            raise OSError(-got, "io_uring_enter(GETEVENTS) failed")
        return self._unpack(got)

    def poll(self) -> tuple[list[int], list[int]]:
        # One io_uring_enter (it also runs deferred task work); the eventfd is drained only
        # when something came, so an empty poll costs a single system call.
        got = lib.ie_uring_poll(self.ring, self.eventfd, self._ud, self._res, REAP_BATCH)
        if got < 0:
            raise OSError(-got, "io_uring_enter(GETEVENTS) failed")
        return self._unpack(got)

    def wait_all(self, inflight: int) -> list[int]:
        uds: list[int] = []
        while len(uds) < inflight:
            ret = lib.ie_uring_wait(self.ring, 1)
            if ret < 0 and ret != -errno.EINTR:
                break
            got = lib.ie_uring_reap(self.ring, self._ud, self._res, REAP_BATCH, 1)
            uds.extend(ffi.unpack(self._ud, got) if got > 0 else [])
        return uds

    def close(self) -> None:
        if self.ring is not None:
            lib.ie_uring_destroy(self.ring)
            self.ring = None
        super().close()
