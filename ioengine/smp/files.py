"""Files across shards (Seastar's file_handle): a picklable handle that becomes a File elsewhere.

A File belongs to its shard's reactor; another shard cannot use it. ``file_handle(f)`` takes
what another shard needs to open the same file for itself: the path, the open flags (access
mode and O_DSYNC; never CREATE/TRUNCATE/EXCLUSIVE, which would change the file) and the file's
identity (device, inode). ``await handle.to_file()`` on any shard opens it with
``open_file_dma`` on that shard's reactor: by its path when the path still names the same inode,
else through ``/proc/<pid>/fd/<fd>`` of the shard that holds it open (so a file renamed or
unlinked since is still reached). Each shard gets its own open file description (its own fd):
positions do not matter for DMA I/O, and closing one shard's File leaves the others open.
The ``/proc`` route needs the original File to still be open.
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from typing import Any

_KEEP_FLAGS = os.O_ACCMODE | os.O_DSYNC


@dataclass(frozen=True, slots=True)
class FileHandle:
    """A File's identity, to be sent to another shard (it pickles); see the module docstring."""

    #: The path the file was opened by.
    path: str
    #: OpenFlags to reopen it with (RO/WO/RW, DSYNC).
    flags: int
    #: st_dev and st_ino of the open file: the reopened file must be this one.
    device: int
    inode: int
    #: /proc/<pid>/fd/<fd> of the File on the shard that made the handle.
    proc_path: str

    async def to_file(self, options: Any = None) -> Any:
        """A File for the same file on this shard's reactor (close it as usual)."""
        from ..file import open_file_dma  # files sit above shards in the layers

        tried = []
        for candidate in (self.path, self.proc_path):
            try:
                f = await open_file_dma(candidate, self.flags, options)
            except OSError as e:
                tried.append(f"{candidate}: {e.strerror or e}")
                continue
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) == (self.device, self.inode):
                return f
            await f.close()
            tried.append(f"{candidate}: now names another file (inode {st.st_ino}, not {self.inode})")
        raise FileNotFoundError(f"file_handle of {self.path!r} can no longer be opened (the original File must "
                                f"stay open while handles are used): " + "; ".join(tried))


def file_handle(f: Any) -> FileHandle:
    """A picklable handle of open File ``f``, for ``submit_to`` (``await handle.to_file()`` there)."""
    fd = f.fileno()
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    flags = fl & os.O_ACCMODE
    if fl & os.O_DSYNC == os.O_DSYNC:
        flags |= os.O_DSYNC
    st = os.fstat(fd)
    return FileHandle(os.path.abspath(os.fspath(f.path)), flags & _KEEP_FLAGS, st.st_dev, st.st_ino,
                      f"/proc/{os.getpid()}/fd/{fd}")
