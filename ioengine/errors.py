"""Exceptions that teach: each says what was expected and which file it concerns."""
from __future__ import annotations

import errno as _errno
import os


class ClosedFileError(ValueError):
    """An operation on a File (or stream) after close()."""


class BackendUnavailableError(OSError):
    """The requested I/O backend cannot start on this host; the message names the cause."""


class ShortReadError(EOFError):
    """dma_read_exactly found fewer bytes than asked (end of file).

    ``partial`` holds the bytes there were and ``expected`` the count asked, as in asyncio's
    IncompleteReadError (which an input stream's read_exactly raises instead).
    """

    def __init__(self, message: str, partial: bytes = b"", expected: int | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.expected = expected


def kernel_error(err: int, operation: str, path: object, detail: str = "") -> OSError:
    """An OSError (subclass chosen from errno) naming errno, the operation and the path.

    ``path`` may be a path or an object with a ``path`` attribute (a File owning the request).
    """
    path = getattr(path, "path", path)
    name = _errno.errorcode.get(err, str(err))
    where = f" ({detail})" if detail else ""
    return OSError(err, f"{operation} failed with {name}: {os.strerror(err)}{where}", path)
