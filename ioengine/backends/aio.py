"""linux-aio backend (libaio): io_submit in batches, completions signalled on an eventfd."""
from __future__ import annotations

import errno
from array import array

from .._native import ffi, lib
from ..errors import BackendUnavailableError
from .base import REAP_BATCH, REC_WORDS, Backend


class AioBackend(Backend):
    name = "linux-aio"

    def __init__(self, entries: int) -> None:
        super().__init__(capacity=entries)
        out = ffi.new("struct ie_aio **")
        ret = lib.ie_aio_create(entries, self.eventfd, out)
        if ret < 0:
            super().close()
            err = -ret
            if err == errno.EAGAIN:
                why = f"io_setup({entries}) returned EAGAIN: /proc/sys/fs/aio-max-nr is exhausted"
            elif err == errno.ENOSYS:
                why = "io_setup returned ENOSYS: the kernel lacks linux-aio or a seccomp filter blocks it"
            else:
                why = f"io_setup failed with {errno.errorcode.get(err, err)}"
            raise BackendUnavailableError(err, why)
        self.ctx = out[0]

    def flush(self, recs: array | memoryview) -> tuple[int, list[int], list[int]]:
        n = len(recs) // REC_WORDS
        done = 0
        failed_uds: list[int] = []
        failed_res: list[int] = []
        if n:
            base = ffi.from_buffer("uint64_t[]", recs)
            while done < n:
                ret = lib.ie_aio_submit_batch(self.ctx, base + done * REC_WORDS, n - done)
                if ret >= 0:
                    done += ret
                    if ret == 0:
                        break  # the context is full: the rest waits for completions
                elif ret == -errno.EAGAIN:
                    break
                else:
                    # io_submit refuses the batch at its first bad iocb: that one request fails
                    # (as a completion), the ones after it are submitted on the next pass.
                    failed_uds.append(recs[done * REC_WORDS + 4])
                    failed_res.append(ret)
                    done += 1
        uds, res = self.reap_ready()
        if uds:
            # What completed by now (io_submit may complete a request before it returns) also
            # signalled the eventfd: drain it, or the loop wakes once more for nothing, then reap
            # what came between the reap and the drain (its own signal, if later, stays).
            lib.ie_eventfd_drain(self.eventfd)
            more_uds, more_res = self.reap_ready()
            uds += more_uds
            res += more_res
        return done, failed_uds + uds, failed_res + res

    def reap_ready(self) -> tuple[list[int], list[int]]:
        got = lib.ie_aio_reap(self.ctx, self._ud, self._res, REAP_BATCH)
        if got < 0:
            raise OSError(-got, "io_getevents failed")
        return self._unpack(got)

    def reap(self) -> tuple[list[int], list[int]]:
        lib.ie_eventfd_drain(self.eventfd)
        return self.reap_ready()

    def wait_all(self, inflight: int) -> list[int]:
        uds: list[int] = []
        while len(uds) < inflight:
            got = lib.ie_aio_wait(self.ctx, 1, self._ud, self._res, REAP_BATCH)
            if got < 0 and got != -errno.EINTR:
                break
            uds.extend(ffi.unpack(self._ud, got) if got > 0 else [])
        return uds

    def close(self) -> None:
        if self.ctx is not None:
            lib.ie_aio_destroy(self.ctx)
            self.ctx = None
        super().close()
