"""Async kernel primitives: an io_uring op where the ring has it, the reactor's thread pool otherwise.

File and the fs module are built from these; nothing here blocks the event loop.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ._native import ffi, lib
from .errors import kernel_error
from .reactor import Reactor

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800
STATX_MASK = STATX_BASIC_STATS | STATX_BTIME | lib.ie_statx_dioalign_flag()
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


class PathOwner(Protocol):
    """An object that owns a request and names its path (a File): passed where a path is, the
    error names its path, and the reactor keeps the descriptor open until the kernel is done."""

    @property
    def path(self) -> str: ...


#: Where an error names a path: the path, the File owning the request, or nothing.
PathOrOwner = str | PathOwner | None


#: ioctl(2) request of the size of a block device in bytes (linux/fs.h: _IOR(0x12, 114, size_t)).
BLKGETSIZE64 = 0x80081272


def block_device_size(fd: int, path: object) -> int:
    """The size of the block device open on ``fd``, in bytes (an ioctl: it does not block)."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, BLKGETSIZE64, buf)
    except OSError as e:
        raise kernel_error(e.errno or 0, "ioctl(BLKGETSIZE64)", path) from None
    return int.from_bytes(buf, "little")


@dataclass(frozen=True, slots=True)
class StatData:
    """What statx(2) says of a file (Seastar's stat_data, with the direct-I/O alignments)."""

    device_id: int
    device_major: int
    device_minor: int
    inode_number: int
    mode: int
    number_of_links: int
    uid: int
    gid: int
    rdev: int
    size: int
    block_size: int
    allocated_size: int
    time_accessed: float
    time_modified: float
    time_changed: float
    time_born: float | None
    dio_mem_align: int
    dio_offset_align: int

    @property
    def is_directory(self) -> bool:
        return (self.mode & 0o170000) == 0o040000

    @property
    def is_regular(self) -> bool:
        return (self.mode & 0o170000) == 0o100000

    @classmethod
    def _from_native(cls, s: Any) -> StatData:
        return cls(
            device_id=os.makedev(s.dev_major, s.dev_minor),
            device_major=s.dev_major,
            device_minor=s.dev_minor,
            inode_number=s.ino,
            mode=s.mode,
            number_of_links=s.nlink,
            uid=s.uid,
            gid=s.gid,
            rdev=os.makedev(s.rdev_major, s.rdev_minor),
            size=s.size,
            block_size=s.blksize,
            allocated_size=s.blocks * 512,
            time_accessed=s.atime_sec + s.atime_nsec * 1e-9,
            time_modified=s.mtime_sec + s.mtime_nsec * 1e-9,
            time_changed=s.ctime_sec + s.ctime_nsec * 1e-9,
            time_born=(s.btime_sec + s.btime_nsec * 1e-9) if s.mask & STATX_BTIME else None,
            dio_mem_align=s.dio_mem_align,
            dio_offset_align=s.dio_offset_align,
        )


def check_path(path: Any, opname: str) -> bytes:
    """``path`` (str, bytes or os.PathLike, as ``os`` takes them) as bytes for the kernel.

    A C string ends at its first NUL: "keep\\0.tmp" would reach the kernel as "keep". Like
    ``os.open``, refuse it before anything is issued.
    """
    try:
        raw = os.fsencode(path)
    except TypeError:
        raise TypeError(f"{opname}: path must be str, bytes or os.PathLike, got {type(path).__name__}") from None
    if b"\0" in raw:
        raise ValueError(f"{opname}: embedded null byte in path {os.fsdecode(raw)!r}")
    return raw


def _cpath(path: Any, opname: str) -> Any:
    return ffi.new("char[]", check_path(path, opname))


def _blocking_errno(fn: Any, *args: Any) -> int:
    """Run a call raising OSError; return 0 or -errno (so both paths report the same way)."""
    try:
        r = fn(*args)
    except OSError as e:
        return -(e.errno or 5)
    return r if isinstance(r, int) else 0


async def _checked(fut: Any, opname: str, path: Any, detail: str = "") -> int:
    res = await fut
    if res < 0:
        path = getattr(path, "path", path)  # a File owning the request names its path
        raise kernel_error(-res, opname, os.fsdecode(path) if path is not None else None, detail)
    return res


def _close_if_abandoned(req: tuple, res: int) -> None:
    # An open whose awaiter was cancelled: nobody will ever close the descriptor but us.
    if res >= 0 and req[0].done():
        os.close(res)


def _open_blocking(path: Any, flags: int, mode: int, handoff: list) -> int:
    """os.open on the thread pool. ``handoff`` = [lock, state]: state None while pending, the
    fd once opened, "abandoned" once the awaiter was cancelled (then the fd is closed here)."""
    try:
        fd = os.open(path, flags, mode)
    except OSError as e:
        return -(e.errno or 5)
    with handoff[0]:
        if handoff[1] == "abandoned":
            os.close(fd)
            return -errno.ECANCELED
        handoff[1] = fd
    return fd


async def openat(r: Reactor, path: Any, flags: int, mode: int, opname: str = "open") -> int:
    path = check_path(path, opname)
    spath = os.fsdecode(path)
    if r.kernel_fs_ops:
        c = _cpath(path, opname)
        fut = r.submit_prepped(lib.ie_uring_prep_openat, (AT_FDCWD, c, flags | os.O_CLOEXEC, mode), c,
                               opname, spath, on_done=_close_if_abandoned)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                os.close(fut.result())  # it opened, but the task was cancelled before resuming
            raise
    handoff: list = [threading.Lock(), None]
    job = r.run_blocking(_open_blocking, path, flags | os.O_CLOEXEC, mode, handoff)
    try:
        return await _checked(job, opname, spath)
    except asyncio.CancelledError:
        with handoff[0]:
            if isinstance(handoff[1], int):
                os.close(handoff[1])  # opened, but nobody will take it
            handoff[1] = "abandoned"
        raise


async def close(r: Reactor, fd: int, path: Any = None) -> None:
    if r.kernel_fs_ops:
        await r.submit_prepped(lib.ie_uring_prep_close, (fd,), None, "close", path)
    else:
        await _checked(r.run_blocking(_blocking_errno, os.close, fd), "close", path)


def _statx_blocking(dfd: int, cpath: Any, flags: int, out: Any) -> int:
    return lib.ie_statx(dfd, cpath, flags, STATX_MASK, out)


async def statx(r: Reactor, path: Any, fd: int = AT_FDCWD, follow_symlink: bool = True,
                opname: str = "stat", owner: object = None) -> StatData:
    """statx(2) of ``path`` (or of ``fd`` when path is None). ``owner`` (a File) makes the
    call count as that file's until the kernel is done with its descriptor."""
    flags = 0 if follow_symlink else AT_SYMLINK_NOFOLLOW
    if path is None:
        c, flags, spath = ffi.new("char[]", b""), flags | AT_EMPTY_PATH, None
    else:
        c, spath = _cpath(path, opname), os.fsdecode(path)
    if r.kernel_fs_ops:
        raw = ffi.gc(lib.ie_statx_buf_new(), lib.ie_statx_buf_free)
        await r.submit_prepped(lib.ie_uring_prep_statx, (fd, c, flags, STATX_MASK, raw), (c, raw), opname,
                               spath if owner is None else owner)
        out = ffi.new("struct ie_stat *")
        lib.ie_statx_convert(raw, out)
    else:
        out = ffi.new("struct ie_stat *")
        res = await r.run_blocking(_statx_blocking, fd, c, flags, out, owner=owner)
        if res < 0:
            raise kernel_error(-res, opname, spath)
    return StatData._from_native(out)


async def statx_fd(r: Reactor, fd: int, path: str | None, opname: str = "stat", owner: object = None) -> StatData:
    try:
        return await statx(r, None, fd=fd, opname=opname, owner=owner)
    except OSError as e:
        raise kernel_error(e.errno or 5, opname, path) from None


async def fallocate(r: Reactor, fd: int, mode: int, pos: int, length: int, opname: str, path: PathOrOwner) -> None:
    detail = f"pos {pos}, {length} bytes"
    if r.kernel_fs_ops:
        await r.submit_prepped(lib.ie_uring_prep_fallocate, (fd, mode, pos, length), None, opname, path)
    else:
        owner = None if path is None or isinstance(path, str) else path
        await _checked(r.run_blocking(lib.ie_fallocate, fd, mode, pos, length, owner=owner), opname, path, detail)


async def ftruncate(r: Reactor, fd: int, length: int, path: str, owner: object) -> None:
    """Set the size of the open file ``fd``: an io_uring op where the kernel has it (Linux 6.9's
    IORING_OP_FTRUNCATE), else ftruncate(2) on the reactor's thread pool. ``owner`` (the File)
    keeps the descriptor open until the kernel is done, even if the awaiter is cancelled."""
    if r.kernel_fs_ops and lib.ie_uring_has_ftruncate(r.ring):
        await r.submit_prepped(lib.ie_uring_prep_ftruncate, (fd, length), None, "truncate", owner)
    else:
        await r.run_blocking(_ftruncate_blocking, fd, length, path, owner=owner)


def _ftruncate_blocking(fd: int, length: int, path: str) -> None:
    try:
        os.ftruncate(fd, length)
    except OSError as e:
        raise kernel_error(e.errno or errno.EIO, "truncate", path, f"to {length} bytes") from None


async def renameat(r: Reactor, old: Any, new: Any) -> None:
    old, new = check_path(old, "rename"), check_path(new, "rename")
    if r.kernel_fs_ops:
        co, cn = _cpath(old, "rename"), _cpath(new, "rename")
        await r.submit_prepped(lib.ie_uring_prep_renameat, (AT_FDCWD, co, AT_FDCWD, cn, 0), (co, cn), "rename",
                               f"{os.fsdecode(old)} -> {os.fsdecode(new)}")
    else:
        await _checked(r.run_blocking(_blocking_errno, os.rename, old, new), "rename",
                       f"{os.fsdecode(old)} -> {os.fsdecode(new)}")


async def unlinkat(r: Reactor, path: Any, directory: bool = False) -> None:
    op = "rmdir" if directory else "unlink"
    path = check_path(path, op)
    if r.kernel_fs_ops:
        c = _cpath(path, op)
        await r.submit_prepped(lib.ie_uring_prep_unlinkat, (AT_FDCWD, c, AT_REMOVEDIR if directory else 0), c, op,
                               os.fsdecode(path))
    else:
        fn = os.rmdir if directory else os.unlink
        await _checked(r.run_blocking(_blocking_errno, fn, path), op, path)


async def mkdirat(r: Reactor, path: Any, mode: int) -> None:
    path = check_path(path, "mkdir")
    if r.kernel_fs_ops:
        c = _cpath(path, "mkdir")
        await r.submit_prepped(lib.ie_uring_prep_mkdirat, (AT_FDCWD, c, mode), c, "mkdir", os.fsdecode(path))
    else:
        await _checked(r.run_blocking(_blocking_errno, os.mkdir, path, mode), "mkdir", path)


async def linkat(r: Reactor, old: Any, new: Any) -> None:
    old, new = check_path(old, "link"), check_path(new, "link")
    where = f"{os.fsdecode(old)} -> {os.fsdecode(new)}"
    if r.kernel_fs_ops:
        co, cn = _cpath(old, "link"), _cpath(new, "link")
        await r.submit_prepped(lib.ie_uring_prep_linkat, (AT_FDCWD, co, AT_FDCWD, cn, 0), (co, cn), "link", where)
    else:
        await _checked(r.run_blocking(_blocking_errno, os.link, old, new), "link", where)


async def fsync(r: Reactor, fd: int, path: PathOrOwner, datasync: bool = True) -> None:
    from .backends.base import OP_FSYNC

    op = "fdatasync" if datasync else "fsync"
    if r.backend.name == "linux-aio":
        # linux-aio's IOCB_CMD_FDSYNC is refused by ext4/xfs: use the thread pool.
        owner = None if path is None or isinstance(path, str) else path
        await _checked(r.run_blocking(_blocking_errno, os.fdatasync if datasync else os.fsync, fd, owner=owner),
                       op, path)
    else:
        await r.submit(OP_FSYNC, fd, 0, 0, 0, None, op, path, 1 if datasync else 0, nbytes=-1)


def fstatfs_blocking(fd: int) -> tuple[int, int]:
    """(filesystem magic, block size) of the filesystem holding fd."""
    out = ffi.new("struct ie_statfs *")
    ret = lib.ie_fstatfs(fd, out)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return out.type, out.bsize
