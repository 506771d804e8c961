"""Backends: io_uring (default), linux-aio, threads — one interface, chosen by ReactorOptions.backend."""
from __future__ import annotations

import logging

from ..errors import BackendUnavailableError
from ..options import ReactorOptions
from .base import Backend

log = logging.getLogger(__name__)


def open_backend(options: ReactorOptions) -> Backend:
    """Start the requested backend; with "auto", probe io_uring → linux-aio → threads and log why."""
    from .aio import AioBackend
    from .threads import ThreadsBackend
    from .uring import UringBackend

    makers = {
        "io_uring": lambda: UringBackend(options.ring_entries, options.ring_taskrun_flags),
        "linux-aio": lambda: AioBackend(options.ring_entries),
        "threads": lambda: ThreadsBackend(options.ring_entries, options.threads),
    }
    if options.backend != "auto":
        try:
            return makers[options.backend]()
        except BackendUnavailableError as e:
            raise BackendUnavailableError(e.errno, f"backend {options.backend!r} cannot start: {e.strerror}") from None
    reasons = []
    for name in ("io_uring", "linux-aio"):
        try:
            return makers[name]()
        except BackendUnavailableError as e:
            reasons.append(f"{name}: {e.strerror}")
            log.warning("ioengine: %s unavailable (%s); trying the next backend", name, e.strerror)
    log.warning("ioengine: falling back to the thread-pool backend (%s)", "; ".join(reasons))
    return makers["threads"]()


__all__ = ["Backend", "open_backend"]
