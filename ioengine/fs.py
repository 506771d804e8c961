"""Directory and metadata operations (Seastar's file_exists, rename_file, …); none blocks the loop."""
from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from . import _ops
from .errors import kernel_error
from .reactor import get_reactor

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]


async def file_stat(path: PathLike, follow_symlink: bool = True) -> _ops.StatData:
    return await _ops.statx(get_reactor(), path, follow_symlink=follow_symlink, opname="file_stat")


async def file_exists(path: PathLike) -> bool:
    try:
        await _ops.statx(get_reactor(), path, follow_symlink=False, opname="file_exists")
    except FileNotFoundError:
        return False
    return True


async def file_size(path: PathLike) -> int:
    return (await _ops.statx(get_reactor(), path, opname="file_size")).size


async def remove_file(path: PathLike) -> None:
    """Remove a file or an empty directory."""
    r = get_reactor()
    try:
        await _ops.unlinkat(r, path)
    except IsADirectoryError:
        await _ops.unlinkat(r, path, directory=True)
    except PermissionError:
        # unlink of a directory gives EISDIR on Linux, but EPERM on some filesystems.
        if not os.path.isdir(_ops.check_path(path, "remove_file")):
            raise
        await _ops.unlinkat(r, path, directory=True)


async def rename_file(old_path: PathLike, new_path: PathLike) -> None:
    await _ops.renameat(get_reactor(), old_path, new_path)


async def link_file(old_path: PathLike, new_path: PathLike) -> None:
    """Make a hard link ``new_path`` to ``old_path``."""
    await _ops.linkat(get_reactor(), old_path, new_path)


async def make_directory(path: PathLike, permissions: int = 0o777) -> None:
    """mkdir with Seastar's default permissions (0o777; the process umask applies, as for files)."""
    await _ops.mkdirat(get_reactor(), path, permissions)


async def touch_directory(path: PathLike, permissions: int = 0o777) -> None:
    """Create a directory if it does not exist yet."""
    try:
        await _ops.mkdirat(get_reactor(), path, permissions)
    except FileExistsError:
        st = await file_stat(path)
        if not st.is_directory:
            raise NotADirectoryError(errno.ENOTDIR, "touch_directory: exists and is not a directory",
                                     os.fsdecode(path)) from None


async def sync_directory(path: PathLike) -> None:
    """Make a directory's entries (creations, renames, removals) durable."""
    r = get_reactor()
    fd = await _ops.openat(r, path, os.O_RDONLY | os.O_DIRECTORY, 0, "sync_directory")
    try:
        await _ops.fsync(r, fd, os.fsdecode(path), datasync=False)
    finally:
        await _ops.close(r, fd, os.fsdecode(path))


async def recursive_touch_directory(path: PathLike, permissions: int = 0o777) -> None:
    """mkdir -p, making each directory it creates durable in its parent."""
    path = os.path.abspath(os.fsdecode(_ops.check_path(path, "recursive_touch_directory")))
    missing: list[str] = []
    p = path
    while not await file_exists(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        await touch_directory(d, permissions)
        await sync_directory(os.path.dirname(d))


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One entry of list_directory: its name and type ("file", "directory", "link", "other")."""

    name: str
    type: str


def _scan(path: str) -> list[DirectoryEntry]:
    out = []
    with os.scandir(path) as it:
        for e in it:
            if e.is_symlink():
                kind = "link"
            elif e.is_dir(follow_symlinks=False):
                kind = "directory"
            elif e.is_file(follow_symlinks=False):
                kind = "file"
            else:
                kind = "other"
            out.append(DirectoryEntry(e.name, kind))
    return out


async def list_directory(path: PathLike) -> AsyncIterator[DirectoryEntry]:
    """``async for entry in list_directory(path)``: the entries, read on the thread pool."""
    spath = os.fsdecode(_ops.check_path(path, "list_directory"))
    try:
        entries = await get_reactor().run_blocking(_scan, spath)
    except OSError as e:
        raise kernel_error(e.errno or errno.EIO, "list_directory", spath) from None
    for entry in entries:
        yield entry


def _statvfs(path: str) -> os.statvfs_result:
    return os.statvfs(path)


async def _statvfs_checked(path: PathLike, op: str) -> os.statvfs_result:
    spath = os.fsdecode(_ops.check_path(path, op))
    try:
        return await get_reactor().run_blocking(_statvfs, spath)
    except OSError as e:
        raise kernel_error(e.errno or errno.EIO, op, spath) from None


async def fs_avail(path: PathLike) -> int:
    """Bytes an unprivileged user can still write on the filesystem holding ``path``."""
    st = await _statvfs_checked(path, "fs_avail")
    return st.f_bavail * st.f_frsize


async def fs_free(path: PathLike) -> int:
    """Free bytes on the filesystem holding ``path`` (including those reserved for root)."""
    st = await _statvfs_checked(path, "fs_free")
    return st.f_bfree * st.f_frsize
