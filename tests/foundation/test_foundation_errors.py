"""Errors that teach: misaligned requests are refused before anything is queued, naming the
alignment and the file; kernel errors are OSErrors with errno, operation and path; the reactor
keeps working after any of them. Runs through every backend."""
from __future__ import annotations

import asyncio
import errno
import os

import pytest

import ioengine
from ioengine import OpenFlags as F

from foundation_util import pattern_block, write_pattern_file

BS = 4096


async def _open_test_file(path, flags=F.RW):
    write_pattern_file(path, 8, BS)
    return await ioengine.open_file_dma(path, flags)


def _assert_refused_before_submission(exc_info, align: int, path) -> None:
    msg = str(exc_info.value)
    assert str(align) in msg, msg
    assert str(path) in msg, msg
    assert ioengine.get_reactor().inflight == 0


def test_misaligned_position_length_and_address(run, scratch):
    path = scratch / "mis"

    async def main():
        async with await _open_test_file(path) as f:
            ra, wa, ma = f.disk_read_dma_alignment, f.disk_write_dma_alignment, f.memory_dma_alignment
            buf = f.allocate_buffer(2 * BS)
            # positions
            for pos in (1, ra // 2, ra + 1):
                with pytest.raises(ValueError) as ei:
                    await f.dma_read(pos, buf)
                _assert_refused_before_submission(ei, ra, path)
                assert "position" in str(ei.value)
            for pos in (1, wa // 2, wa + ra if wa > ra else wa + 1):
                with pytest.raises(ValueError) as ei:
                    await f.dma_write(pos, buf)
                _assert_refused_before_submission(ei, wa, path)
            with pytest.raises(ValueError) as ei:
                await f.dma_read(-ra, buf)
            assert ioengine.get_reactor().inflight == 0
            # lengths
            with pytest.raises(ValueError) as ei:
                await f.dma_read(0, memoryview(buf)[:ra + 1])
            _assert_refused_before_submission(ei, ra, path)
            assert "length" in str(ei.value)
            with pytest.raises(ValueError) as ei:
                await f.dma_write(0, memoryview(buf)[:wa - ra if wa > ra else wa - 1])
            _assert_refused_before_submission(ei, wa, path)
            # buffer addresses (a correct length at a misaligned address)
            for op in (f.dma_read, f.dma_write):
                with pytest.raises(ValueError) as ei:
                    await op(0, memoryview(buf)[1:BS + 1])
                _assert_refused_before_submission(ei, ma, path)
                assert "address" in str(ei.value)
            # a plain bytearray is (almost surely) not aligned enough: refused, not sent to the kernel
            ba = bytearray(BS + ma)
            view = memoryview(ba)[(1 if _address(ba) % ma == 0 else 0):][:BS]
            with pytest.raises(ValueError) as ei:
                await f.dma_read(0, view)
            _assert_refused_before_submission(ei, ma, path)
            # vectors: each buffer is checked
            good = f.allocate_buffer(BS)
            with pytest.raises(ValueError) as ei:
                await f.dma_readv(0, [good, memoryview(buf)[1:BS + 1]])
            _assert_refused_before_submission(ei, ma, path)
            with pytest.raises(ValueError) as ei:
                await f.dma_writev(1, [good])
            _assert_refused_before_submission(ei, wa, path)
            with pytest.raises(ValueError):
                await f.dma_readv(0, [])
            # more buffers than the kernel takes in one call: the part it takes, a short count
            assert await f.dma_writev(1 << 24, [good] * 1025) == 1024 * BS  # away from the pattern
            assert ioengine.get_reactor().inflight == 0
            # and the file still works
            assert await f.dma_read(0, good) == BS
            assert bytes(good) == pattern_block(0, BS)

    run(main())


def _address(obj) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(obj))


def test_read_into_readonly_or_non_buffer(run, scratch):
    path = scratch / "ro-buf"

    async def main():
        async with await _open_test_file(path) as f:
            with pytest.raises(TypeError):
                await f.dma_read(0, bytes(BS))
            with pytest.raises(TypeError):
                await f.dma_read(0, memoryview(bytes(BS)))
            with pytest.raises(TypeError):
                await f.dma_readv(0, [f.allocate_buffer(BS), bytes(BS)])
            with pytest.raises(TypeError):
                await f.dma_read(0, 12345)
            with pytest.raises(TypeError):
                await f.dma_write(0, "not bytes")
            assert ioengine.get_reactor().inflight == 0
            # a read-only view is fine to write from
            src = f.allocate_buffer(BS)
            src[:] = pattern_block(7, BS)
            assert await f.dma_write(0, memoryview(src).toreadonly()) == BS
            assert bytes(await f.dma_read_exactly(0, BS)) == pattern_block(7, BS)

    run(main())


def test_use_after_close(run, scratch):
    path = scratch / "closed"

    async def main():
        f = await _open_test_file(path)
        buf = f.allocate_buffer(BS)
        await f.close()
        await f.close()  # idempotent
        assert f.closed
        calls = {
            "dma_read": lambda: f.dma_read(0, buf),
            "dma_write": lambda: f.dma_write(0, buf),
            "dma_readv": lambda: f.dma_readv(0, [buf]),
            "dma_writev": lambda: f.dma_writev(0, [buf]),
            "dma_read_bulk": lambda: f.dma_read_bulk(0, 10),
            "dma_read_exactly": lambda: f.dma_read_exactly(0, 10),
            "flush": lambda: f.flush(),
            "truncate": lambda: f.truncate(0),
            "allocate": lambda: f.allocate(0, BS),
            "discard": lambda: f.discard(0, BS),
            "size": lambda: f.size(),
            "stat": lambda: f.stat(),
        }
        for name, call in calls.items():
            with pytest.raises(ioengine.ClosedFileError) as ei:
                await call()
            assert isinstance(ei.value, ValueError)
            assert str(path) in str(ei.value), name
        with pytest.raises(ioengine.ClosedFileError):
            f.fileno()
        assert ioengine.get_reactor().inflight == 0
        async with await ioengine.open_file_dma(path, F.RO) as g:  # the reactor is fine
            assert await g.dma_read(0, buf) == BS

    run(main())


def test_kernel_errors_name_errno_operation_and_path(run, scratch):
    missing = scratch / "missing"
    path = scratch / "data"

    async def main():
        with pytest.raises(FileNotFoundError) as ei:
            await ioengine.open_file_dma(missing, F.RW)
        _assert_kernel_error(ei.value, errno.ENOENT, "open_file_dma", missing)

        write_pattern_file(path, 4, BS)
        ro = await ioengine.open_file_dma(path, F.RO)
        wo = await ioengine.open_file_dma(path, F.WO)
        buf = ro.allocate_buffer(BS)
        with pytest.raises(OSError) as ei:
            await ro.dma_write(0, buf)
        _assert_kernel_error(ei.value, errno.EBADF, "dma_write", path)
        # the reactor keeps working: the next op succeeds
        assert await ro.dma_read(0, buf) == BS and bytes(buf) == pattern_block(0, BS)
        with pytest.raises(OSError) as ei:
            await wo.dma_read(0, buf)
        _assert_kernel_error(ei.value, errno.EBADF, "dma_read", path)
        with pytest.raises(OSError) as ei:
            await ro.dma_writev(0, [buf])
        _assert_kernel_error(ei.value, errno.EBADF, "dma_writev", path)
        with pytest.raises(OSError) as ei:
            await wo.dma_readv(0, [buf])
        _assert_kernel_error(ei.value, errno.EBADF, "dma_readv", path)
        with pytest.raises(OSError) as ei:
            await ro.truncate(0)
        assert ei.value.errno in (errno.EINVAL, errno.EBADF)
        assert "truncate" in str(ei.value) and str(path) in str(ei.value)
        with pytest.raises(OSError) as ei:
            await ro.discard(0, BS)
        _assert_kernel_error(ei.value, errno.EBADF, "discard", path)
        with pytest.raises(OSError) as ei:
            await ro.allocate(0, BS)
        _assert_kernel_error(ei.value, errno.EBADF, "allocate", path)
        assert ioengine.get_reactor().inflight == 0
        # after all that, reads and writes still work
        assert await wo.dma_write(BS, buf) == BS
        got = await ro.dma_read_exactly(BS, BS)
        assert bytes(got) == pattern_block(0, BS)
        await ro.close()
        await wo.close()
        with open(path, "rb") as fh:
            assert fh.read(BS) == pattern_block(0, BS)

    run(main())


def _assert_kernel_error(e: OSError, err: int, op: str, path) -> None:
    assert isinstance(e, OSError)
    assert e.errno == err, e
    s = str(e)
    assert op in s, s
    assert str(path) in s, s
    assert errno.errorcode[err] in s or os.strerror(err) in s, s


def test_a_failing_request_does_not_fail_its_batch(run, scratch):
    """A request the kernel refuses at submission (EBADF) fails alone; the valid requests
    submitted in the same batch, before and after it, succeed. (linux-aio used to fail the whole
    batch: io_submit stops at the first bad iocb.)"""
    path = scratch / "batch"

    async def main():
        write_pattern_file(path, 8, BS)
        async with await ioengine.open_file_dma(path, F.RO) as ro, \
                await ioengine.open_file_dma(path, F.RW) as rw:
            bufs = [rw.allocate_buffer(BS) for _ in range(6)]
            results = await asyncio.gather(
                rw.dma_read(0, bufs[0]),
                ro.dma_write(0, bufs[1]),  # EBADF
                rw.dma_read(BS, bufs[2]),
                rw.dma_read(2 * BS, bufs[3]),
                ro.dma_write(BS, bufs[4]),  # EBADF
                rw.dma_read(3 * BS, bufs[5]),
                return_exceptions=True)
            assert [type(r).__name__ for r in results] == ["int", "OSError", "int", "int", "OSError", "int"], results
            for i, k in ((0, 0), (2, 1), (3, 2), (5, 3)):
                assert bytes(bufs[i]) == pattern_block(k, BS)

    run(main())


def test_open_refuses_a_filesystem_without_o_direct(run):
    """A filesystem that refuses O_DIRECT (other than tmpfs) is a clear error, not a silent
    buffered open."""
    path = "/proc/self/status"

    async def main():
        with pytest.raises(OSError) as ei:
            await ioengine.open_file_dma(path, F.RO)
        assert ei.value.errno == errno.EINVAL
        assert "O_DIRECT" in str(ei.value) and path in str(ei.value)

    run(main())


def test_open_directory_read_only_says_it_is_a_directory(run, scratch):
    """The O_DIRECT open of a directory gives EINVAL; that must not be blamed on the filesystem
    lacking O_DIRECT (it used to be)."""
    d = scratch / "adir"
    d.mkdir()

    async def main():
        with pytest.raises(IsADirectoryError):
            await ioengine.open_file_dma(d, F.RW)  # the kernel's own EISDIR
        with pytest.raises(OSError) as ei:
            await ioengine.open_file_dma(d, F.RO)
        assert "does not support O_DIRECT" not in str(ei.value)
        assert ei.value.errno == errno.EISDIR, ei.value

    run(main())


def test_reactor_option_errors():
    async def nothing():
        return 1

    coro = nothing()
    with pytest.raises(TypeError) as ei:
        ioengine.run(coro, bogus=1)
    msg = str(ei.value)
    assert "bogus" in msg
    for known in ("backend", "ring_entries", "threads"):
        assert known in msg, msg
    with pytest.raises(ValueError) as ei:
        ioengine.run(coro, backend="nope")
    assert "nope" in str(ei.value) and "io_uring" in str(ei.value)
    with pytest.raises(ValueError):
        ioengine.run(coro, ring_entries=0)
    coro.close()
    with pytest.raises(ValueError):
        ioengine.ReactorOptions(backend="uring")
    for bad in (0, -1.0, float("inf"), "2", True):
        with pytest.raises(ValueError, match="io_in_disk_goals must be a positive number"):
            ioengine.ReactorOptions(io_in_disk_goals=bad)
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="io_dispatch_slice must be a number"):
            ioengine.ReactorOptions(io_dispatch_slice=bad)
    for bad in (-0.1, 1.0, "0.5", True):
        with pytest.raises(ValueError, match="io_fair_wait_fraction must be a number"):
            ioengine.ReactorOptions(io_fair_wait_fraction=bad)
    with pytest.raises(TypeError):
        ioengine.configure(bogus=1)


def test_open_flag_errors(run, scratch):
    path = scratch / "flags"
    path.write_bytes(b"x" * BS)

    async def main():
        with pytest.raises(ValueError):
            await ioengine.open_file_dma(path, F.WO | F.RW)
        with pytest.raises(ValueError):
            await ioengine.open_file_dma(path, F.RO | os.O_APPEND)
        with pytest.raises(TypeError):
            await ioengine.open_file_dma(path, F.RO, options={"sloppy_size": True})
        with pytest.raises(FileExistsError) as ei:
            await ioengine.open_file_dma(path, F.RW | F.CREATE | F.EXCLUSIVE)
        assert str(path) in str(ei.value)
        assert ioengine.get_reactor().inflight == 0
        async with await ioengine.open_file_dma(path, F.RO) as f:
            assert await f.size() == BS

    run(main())


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_cancelled_open_does_not_leak_descriptors(run, scratch):
    path = scratch / "f"
    write_pattern_file(path, 1, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO):
            pass  # warm up (thread pools, ring)
        before = _open_fds()
        tasks = [asyncio.create_task(ioengine.open_file_dma(path, F.RO)) for _ in range(100)]
        await asyncio.sleep(0)  # every open is issued
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for f in results:  # any open that won the race is closed normally
            if isinstance(f, ioengine.File):
                await f.close()
        await r.drain()
        for _ in range(25):  # let thread-pool opens finish (and a fixed version close them)
            if _open_fds() <= before:
                break
            await asyncio.sleep(0.01)
        assert _open_fds() - before <= 0, f"{_open_fds() - before} descriptors leaked"

    try:
        run(main())
    finally:  # hygiene: close what leaked, so later tests do not run short of descriptors
        for name in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{name}") == str(path):
                    os.close(int(name))
            except OSError:
                pass
