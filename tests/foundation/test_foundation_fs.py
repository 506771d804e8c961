"""Module-level metadata functions (Seastar's file_exists, rename_file, …), through every backend."""
from __future__ import annotations

import errno
import os

import pytest

import ioengine


def test_file_exists_stat_size(run, scratch):
    f = scratch / "f"
    f.write_bytes(b"x" * 1234)
    link = scratch / "dangling"
    os.symlink(scratch / "nowhere", link)

    async def main():
        assert await ioengine.file_exists(f)
        assert await ioengine.file_exists(str(scratch))
        assert not await ioengine.file_exists(scratch / "missing")
        assert await ioengine.file_exists(link)  # the link itself exists
        assert await ioengine.file_size(f) == 1234
        st = await ioengine.file_stat(f)
        assert st.size == 1234 and st.is_regular
        assert (await ioengine.file_stat(scratch)).is_directory
        lst = await ioengine.file_stat(link, follow_symlink=False)
        assert (lst.mode & 0o170000) == 0o120000
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.file_stat(link)
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.file_stat(scratch / "missing")
        assert "file_stat" in str(ei.value) and str(scratch / "missing") in str(ei.value)
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.file_size(scratch / "missing")
        assert str(scratch / "missing") in str(ei.value)
        return st

    st = run(main())
    os_st = os.stat(f)
    assert st.inode_number == os_st.st_ino and st.mode == os_st.st_mode


def test_remove_file(run, scratch):
    f = scratch / "f"
    f.write_bytes(b"x")
    d = scratch / "d"
    d.mkdir()
    full = scratch / "full"
    full.mkdir()
    (full / "x").write_bytes(b"")

    async def main():
        await ioengine.remove_file(f)
        assert not f.exists()
        await ioengine.remove_file(d)  # an empty directory
        assert not d.exists()
        with pytest.raises(OSError) as ei:
            await ioengine.remove_file(full)
        assert ei.value.errno == errno.ENOTEMPTY
        assert str(full) in str(ei.value)
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.remove_file(f)
        assert str(f) in str(ei.value)
        assert ei.value.errno == errno.ENOENT
        await ioengine.remove_file(str(full / "x"))  # str paths too
        assert not (full / "x").exists()

    run(main())


def test_rename_file(run, scratch):
    a, b = scratch / "a", scratch / "b"
    a.write_bytes(b"content")

    async def main():
        await ioengine.rename_file(a, b)
        assert not await ioengine.file_exists(a)
        assert await ioengine.file_exists(b)
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.rename_file(a, scratch / "c")
        assert str(a) in str(ei.value) and "rename" in str(ei.value)
        # rename over an existing file replaces it
        (scratch / "c").write_bytes(b"old")
        await ioengine.rename_file(b, scratch / "c")

    run(main())
    assert (scratch / "c").read_bytes() == b"content"


def test_link_file(run, scratch):
    a, b = scratch / "a", scratch / "b"
    a.write_bytes(b"content")

    async def main():
        await ioengine.link_file(a, b)
        st = await ioengine.file_stat(a)
        assert st.number_of_links == 2
        assert (await ioengine.file_stat(b)).inode_number == st.inode_number
        with pytest.raises(FileExistsError) as ei:
            await ioengine.link_file(a, b)
        assert str(b) in str(ei.value)
        with pytest.raises(FileNotFoundError):
            await ioengine.link_file(scratch / "missing", scratch / "c")

    run(main())
    assert os.stat(a).st_nlink == 2
    assert b.read_bytes() == b"content"


def test_make_and_touch_directory(run, scratch):
    d = scratch / "d"
    f = scratch / "f"
    f.write_bytes(b"")

    async def main():
        await ioengine.make_directory(d)
        assert (await ioengine.file_stat(d)).is_directory
        with pytest.raises(FileExistsError) as ei:
            await ioengine.make_directory(d)
        assert str(d) in str(ei.value)
        await ioengine.touch_directory(d)  # exists: fine
        await ioengine.touch_directory(d)
        await ioengine.touch_directory(scratch / "t", 0o700)
        await ioengine.touch_directory(scratch / "t")
        with pytest.raises(OSError) as ei:
            await ioengine.touch_directory(f)  # a file is in the way
        assert ei.value.errno == errno.ENOTDIR
        assert str(f) in str(ei.value)
        with pytest.raises(FileNotFoundError):
            await ioengine.make_directory(scratch / "no" / "parent")
        await ioengine.make_directory(scratch / "m", 0o700)

    old = os.umask(0o022)
    try:
        run(main())
    finally:
        os.umask(old)
    assert d.is_dir() and (scratch / "t").is_dir()
    assert (os.stat(scratch / "t").st_mode & 0o777) == 0o700
    assert (os.stat(scratch / "m").st_mode & 0o777) == 0o700
    assert (os.stat(d).st_mode & 0o777) == 0o755


def test_recursive_touch_directory(run, scratch):
    deep = scratch / "a" / "b" / "c"
    f = scratch / "file"
    f.write_bytes(b"")

    async def main():
        await ioengine.recursive_touch_directory(deep)
        assert deep.is_dir()
        await ioengine.recursive_touch_directory(deep)  # idempotent
        await ioengine.recursive_touch_directory(str(scratch / "a" / "x"))
        with pytest.raises(OSError):
            await ioengine.recursive_touch_directory(f / "sub")

    run(main())
    assert (scratch / "a" / "x").is_dir()


def test_sync_directory(run, scratch):
    async def main():
        (scratch / "new").write_bytes(b"")
        await ioengine.sync_directory(scratch)
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.sync_directory(scratch / "missing")
        assert str(scratch / "missing") in str(ei.value)
        with pytest.raises(NotADirectoryError):
            await ioengine.sync_directory(scratch / "new")
        await ioengine.sync_directory(scratch)  # still fine after errors

    run(main())


def test_list_directory(run, scratch):
    (scratch / "file").write_bytes(b"x")
    (scratch / "dir").mkdir()
    os.symlink("file", scratch / "link")
    os.mkfifo(scratch / "fifo")

    async def main():
        entries = [e async for e in ioengine.list_directory(scratch)]
        empty = [e async for e in ioengine.list_directory(scratch / "dir")]
        with pytest.raises(FileNotFoundError) as ei:
            async for _ in ioengine.list_directory(scratch / "missing"):
                pass
        assert "list_directory" in str(ei.value) and str(scratch / "missing") in str(ei.value)
        return entries, empty

    entries, empty = run(main())
    assert all(isinstance(e, ioengine.DirectoryEntry) for e in entries)
    assert {(e.name, e.type) for e in entries} == {
        ("file", "file"), ("dir", "directory"), ("link", "link"), ("fifo", "other")}
    assert empty == []


def test_fs_avail_and_free(run, scratch):
    async def main():
        return await ioengine.fs_avail(scratch), await ioengine.fs_free(scratch), \
            await ioengine.fs_avail(str(scratch))

    avail, free, avail2 = run(main())
    st = os.statvfs(scratch)
    total = st.f_blocks * st.f_frsize
    assert 0 < avail <= free <= total
    # the filesystem is shared and busy: compare loosely with statvfs now
    assert abs(avail - st.f_bavail * st.f_frsize) <= total // 100
    assert abs(free - st.f_bfree * st.f_frsize) <= total // 100
    assert avail2 > 0


def test_fs_avail_and_free_errors_name_the_operation(run, scratch):
    missing = scratch / "missing"

    async def main():
        for name, fn in (("fs_avail", ioengine.fs_avail), ("fs_free", ioengine.fs_free)):
            with pytest.raises(FileNotFoundError) as ei:
                await fn(missing)
            assert str(missing) in str(ei.value)
            assert name in str(ei.value), str(ei.value)

    run(main())


def test_many_concurrent_metadata_ops(run, scratch):
    """More metadata ops at once than the ring has entries (io_uring queues them as SQEs directly)."""
    for i in range(8):
        (scratch / f"f{i}").write_bytes(b"x" * i)

    async def main():
        import asyncio

        stats = await asyncio.gather(*(ioengine.file_stat(scratch / f"f{i % 8}") for i in range(1500)))
        assert [s.size for s in stats] == [i % 8 for i in range(1500)]
        exists = await asyncio.gather(*(ioengine.file_exists(scratch / f"nope{i}") for i in range(1500)))
        assert not any(exists)
        assert ioengine.get_reactor().inflight == 0

    run(main(), ring_entries=64)
