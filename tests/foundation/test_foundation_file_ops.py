"""File: alignment discovery, flush / truncate / allocate / discard / size / stat / close,
open flags and options, tmpfs. Runs through every backend."""
from __future__ import annotations

import ctypes
import errno
import os
import stat as stat_mod
import struct
import tempfile
from pathlib import Path

import pytest

import ioengine
from ioengine import OpenFlags as F

from foundation_util import pattern_block, read_file, write_pattern_file

BS = 4096
STATX_DIOALIGN = 0x2000


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _statx_dioalign(path) -> tuple[int, int] | None:
    """(dio_mem_align, dio_offset_align) from statx(2) through libc, or None if unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "statx"):
        return None
    buf = ctypes.create_string_buffer(256)
    AT_FDCWD = -100
    if libc.statx(AT_FDCWD, os.fsencode(path), 0, STATX_DIOALIGN, buf) != 0:
        return None
    mask = struct.unpack_from("<I", buf.raw, 0)[0]
    if not mask & STATX_DIOALIGN:
        return None
    mem, off = struct.unpack_from("<II", buf.raw, 152)
    return (mem, off) if off else None


def _logical_block_size(path) -> int | None:
    st = os.stat(path)
    base = os.path.realpath(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    for d in (base, os.path.dirname(base)):
        try:
            with open(os.path.join(d, "queue/logical_block_size")) as fh:
                return int(fh.read())
        except OSError:
            continue
    return None


def test_alignment_discovery(run, scratch):
    path = scratch / "align"
    path.write_bytes(b"")

    async def main():
        async with await ioengine.open_file_dma(path, F.RW) as f:
            return f.direct, f.memory_dma_alignment, f.disk_read_dma_alignment, f.disk_write_dma_alignment

    direct, mem, rd, wr = run(main())
    assert direct
    for a in (mem, rd, wr):
        assert _pow2(a), (mem, rd, wr)
    assert wr >= rd and wr % rd == 0
    dio = _statx_dioalign(path)
    lbs = _logical_block_size(path)
    if dio is not None:  # statx STATX_DIOALIGN (Linux >= 6.1) is the authority
        assert rd == dio[1], f"read alignment {rd}, statx dio_offset_align {dio[1]}"
        assert mem == dio[0], f"memory alignment {mem}, statx dio_mem_align {dio[0]}"
    elif lbs is not None:  # else the device's logical block size
        assert rd >= lbs and mem >= lbs
    else:
        assert rd == 4096
    if lbs is not None:
        assert rd >= lbs or (dio is not None and rd == dio[1])
    # the filesystem block size is always enough for direct I/O on it
    assert rd <= os.statvfs(path).f_bsize
    # and the discovered alignments are the ones the kernel really accepts for O_DIRECT
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        import mmap

        m = mmap.mmap(-1, 2 * max(wr, 4096))
        mv = memoryview(m)
        assert os.pwritev(fd, [mv[:wr]], wr) == wr
        assert os.preadv(fd, [mv[:rd]], rd) == rd
        del mv
        m.close()
    finally:
        os.close(fd)


def test_file_stat_and_size(run, scratch):
    path = scratch / "st"
    write_pattern_file(path, 3, BS)
    with open(path, "ab") as fh:
        fh.write(b"tail")

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            st = await f.stat()
            assert await f.size() == 3 * BS + 4
            assert repr(f).startswith("<ioengine.File") and str(path) in repr(f)
            assert f.path == str(path)
            assert isinstance(f.fileno(), int)
            return st

    st = run(main())
    os_st = os.stat(path)
    assert isinstance(st, ioengine.StatData)
    assert st.size == os_st.st_size
    assert st.inode_number == os_st.st_ino
    assert st.mode == os_st.st_mode and st.is_regular and not st.is_directory
    assert st.number_of_links == 1
    assert st.device_id == os_st.st_dev
    assert st.uid == os_st.st_uid and st.gid == os_st.st_gid
    assert st.allocated_size == os_st.st_blocks * 512
    assert abs(st.time_modified - os_st.st_mtime) < 1e-3


def test_flush(run, scratch):
    path = scratch / "flush"

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE | F.TRUNCATE) as f:
            b = f.allocate_buffer(BS)
            b[:] = pattern_block(3, BS)
            await f.dma_write(0, b)
            await f.flush()
            await f.flush()
        async with await ioengine.open_file_dma(path, F.RW | F.DSYNC) as f:
            b = f.allocate_buffer(BS)
            b[:] = pattern_block(4, BS)
            await f.dma_write(BS, b)
            await f.flush()

    run(main())
    assert read_file(path) == pattern_block(3, BS) + pattern_block(4, BS)


def test_truncate(run, scratch):
    path = scratch / "trunc"
    write_pattern_file(path, 4, BS)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW) as f:
            await f.truncate(BS + 100)
            assert await f.size() == BS + 100
            assert os.stat(path).st_size == BS + 100
            await f.truncate(8 * BS)  # grows with zeros
            assert await f.size() == 8 * BS
            got = await f.dma_read_bulk(0, 8 * BS)
            assert bytes(got) == pattern_block(0, BS) + pattern_block(1, BS)[:100] + bytes(7 * BS - 100)
            await f.truncate(0)
            assert await f.size() == 0
            with pytest.raises(ValueError):
                await f.truncate(-1)

    run(main())


def test_allocate_keeps_size_and_adds_blocks(run, scratch):
    path = scratch / "alloc"
    write_pattern_file(path, 1, BS)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW) as f:
            before = await f.stat()
            await f.allocate(0, 64 * BS)
            after = await f.stat()
            assert after.size == before.size == BS
            assert await f.size() == BS
            assert after.allocated_size >= 64 * BS > before.allocated_size
            with pytest.raises(ValueError):
                await f.allocate(0, 0)
            with pytest.raises(ValueError):
                await f.allocate(-BS, BS)

    run(main())
    assert os.stat(path).st_size == BS
    assert os.stat(path).st_blocks * 512 >= 64 * BS


def test_discard_punches_a_hole(run, scratch):
    path = scratch / "discard"
    write_pattern_file(path, 16, BS)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW) as f:
            before = (await f.stat()).allocated_size
            await f.discard(4 * BS, 8 * BS)
            st = await f.stat()
            assert st.size == 16 * BS
            assert st.allocated_size <= before - 8 * BS
            got = await f.dma_read_exactly(0, 16 * BS)
            data = bytes(got)
            assert data[4 * BS:12 * BS] == bytes(8 * BS)
            assert data[:4 * BS] == b"".join(pattern_block(i, BS) for i in range(4))
            assert data[12 * BS:] == b"".join(pattern_block(i, BS) for i in range(12, 16))
            with pytest.raises(ValueError):
                await f.discard(0, 0)

    run(main())


def test_close_idempotent_and_async_with(run, scratch):
    path = scratch / "close"

    async def main():
        f = await ioengine.open_file_dma(path, F.RW | F.CREATE)
        fd = f.fileno()
        async with f as g:
            assert g is f
            assert not f.closed
        assert f.closed
        await f.close()
        await f.close()
        with pytest.raises(OSError):
            os.fstat(fd)  # the descriptor is really closed
        # exceptions propagate out of async with, and the file is closed anyway
        with pytest.raises(RuntimeError, match="boom"):
            async with await ioengine.open_file_dma(path, F.RO) as h:
                raise RuntimeError("boom")
        assert h.closed

    run(main())


def test_close_waits_for_writes_in_flight(run, scratch):
    path = scratch / "close-writes"

    async def main():
        import asyncio

        f = await ioengine.open_file_dma(path, F.RW | F.CREATE | F.TRUNCATE)
        bufs = []
        for i in range(32):
            b = f.allocate_buffer(BS)
            b[:] = pattern_block(i, BS)
            bufs.append(b)
        tasks = [asyncio.create_task(f.dma_write(i * BS, bufs[i])) for i in range(32)]
        await asyncio.sleep(0)
        await f.close()
        assert all(t.done() for t in tasks)
        assert [t.result() for t in tasks] == [BS] * 32

    run(main())
    assert read_file(path) == b"".join(pattern_block(i, BS) for i in range(32))


@pytest.mark.parametrize("perms,umask,expected", [(0o666, 0o022, 0o644), (0o600, 0o022, 0o600),
                                                  (0o666, 0o077, 0o600), (0o640, 0o000, 0o640)])
def test_create_permissions_with_umask(run, scratch, perms, umask, expected):
    path = scratch / f"perm-{perms:o}-{umask:o}"

    async def main():
        opts = ioengine.FileOpenOptions(create_permissions=perms)
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE, opts):
            pass

    old = os.umask(umask)
    try:
        run(main())
    finally:
        os.umask(old)
    assert stat_mod.S_IMODE(os.stat(path).st_mode) == expected


def test_create_truncate_exclusive(run, scratch):
    path = scratch / "flags"

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE | F.EXCLUSIVE) as f:
            b = f.allocate_buffer(BS)
            await f.dma_write(0, b)
        with pytest.raises(FileExistsError) as ei:
            await ioengine.open_file_dma(path, F.RW | F.CREATE | F.EXCLUSIVE)
        assert ei.value.errno == errno.EEXIST and str(path) in str(ei.value)
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            assert await f.size() == BS  # CREATE alone keeps the content
        async with await ioengine.open_file_dma(path, F.WO | F.TRUNCATE) as f:
            assert await f.size() == 0

    run(main())


def test_tmpfs(run, backend):
    """/dev/shm: open works whether or not the kernel does O_DIRECT on tmpfs (f.direct says which),
    and a round trip works."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    d = Path(tempfile.mkdtemp(prefix="ioengine-foundation-", dir="/dev/shm"))
    path = d / "f"

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE | F.TRUNCATE) as f:
            assert isinstance(f.direct, bool)
            for a in (f.memory_dma_alignment, f.disk_read_dma_alignment, f.disk_write_dma_alignment):
                assert _pow2(a)
            n = 4 * f.disk_write_dma_alignment
            b = f.allocate_buffer(n)
            b[:] = pattern_block(5, n)
            assert await f.dma_write(0, b) == n
            got = await f.dma_read_exactly(0, n)
            assert bytes(got) == pattern_block(5, n)
            assert bytes(await f.dma_read_bulk(3, 10)) == pattern_block(5, n)[3:13]
            assert await f.size() == n
            await f.flush()
            await f.truncate(n // 2)
            assert await f.size() == n // 2
            return f.direct

    try:
        direct = run(main())
        flags = os.O_RDONLY | os.O_DIRECT
        try:
            os.close(os.open(path, flags))
            kernel_direct = True
        except OSError:
            kernel_direct = False
        assert direct == kernel_direct
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


@pytest.mark.root
def test_size_of_a_block_device(run, scratch):
    """statx says 0 for a block device; size() asks the device (BLKGETSIZE64), as Seastar does."""
    import subprocess

    img = scratch / "blk.img"
    with open(img, "wb") as fh:
        fh.truncate(8 << 20)
    try:
        dev = subprocess.run(["losetup", "--find", "--show", str(img)], check=True, capture_output=True,
                             text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"no loop device here: {e}")
    try:
        async def body():
            f = await ioengine.open_file_dma(dev, ioengine.OpenFlags.RO)
            try:
                return await f.size()
            finally:
                await f.close()

        assert run(body()) == 8 << 20
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
