"""Regression tests of the reliability issue's first defects, on every backend.

1. A number that cannot cross into C (a position >= 2**63, a float) is refused before anything
   is staged: the reactor keeps running, nothing stays "in flight".
2. No I/O is ever issued on a closed descriptor: what close() admitted lands in its own file,
   what comes after is refused with ClosedFileError.
3. A path with a NUL byte is refused (like ``os.open``) instead of being cut short.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import ioengine
from ioengine import ClosedFileError, FileOpenOptions
from ioengine import OpenFlags as O

BIG_POSITIONS = [1 << 64, 1 << 63, (1 << 64) + 4096, -(1 << 64), -4096]


async def _file(scratch: Path, name: str = "f.dat", size: int = 1 << 16) -> ioengine.File:
    p = scratch / name
    p.write_bytes(bytes(range(256)) * (size // 256))
    return await ioengine.open_file_dma(p, O.RW)


@pytest.mark.parametrize("pos", BIG_POSITIONS)
def test_out_of_range_position_leaves_no_trace(run, scratch, pos):
    async def main():
        f = await _file(scratch)
        r = ioengine.get_reactor()
        b = f.allocate_buffer(4096)
        calls = [lambda: f.dma_read(pos, b), lambda: f.dma_write(pos, b), lambda: f.dma_readv(pos, [b]),
                 lambda: f.dma_writev(pos, [b]), lambda: f.dma_read_bulk(pos, 10)]
        for call in calls:
            with pytest.raises(ValueError, match="position"):
                await call()
            assert r.inflight == 0
        # the reactor still works: reads and writes complete and say what they did
        assert await f.dma_read(0, b) == 4096
        assert bytes(b[:4]) == bytes(range(4))
        assert await f.dma_write(4096, b) == 4096
        await f.close()
        assert r.inflight == 0

    run(main())


@pytest.mark.parametrize("pos", [1.5, 4096.0, None, "0", b"0"])
def test_position_of_wrong_type_is_a_clear_type_error(run, scratch, pos):
    async def main():
        f = await _file(scratch)
        b = f.allocate_buffer(4096)
        for call in (lambda: f.dma_read(pos, b), lambda: f.dma_write(pos, b), lambda: f.dma_readv(pos, [b]),
                     lambda: f.dma_read_bulk(pos, 10), lambda: f.allocate(pos, 4096), lambda: f.discard(pos, 4096)):
            with pytest.raises(TypeError, match="position must be an int"):
                await call()
        with pytest.raises(TypeError, match="length must be an int"):
            await f.truncate(pos)
        with pytest.raises(ValueError, match="largest file size"):
            await f.truncate(1 << 63)
        assert ioengine.get_reactor().inflight == 0
        assert await f.dma_read(0, b) == 4096
        await f.close()

    run(main())


def test_reactor_stages_all_or_nothing(run, scratch):
    """The reactor itself refuses a record that does not fit in its words, whoever calls it (File
    also refuses [2**63, 2**64), which would fit and come back as EINVAL)."""
    async def main():
        f = await _file(scratch)
        r = ioengine.get_reactor()
        b = f.allocate_buffer(4096)
        for pos in (1 << 64, -1):
            with pytest.raises(ValueError, match="position"):
                r.submit_rw(0, f.fileno(), b.address, 4096, pos, b, "dma_read", f, None, None, None, None, 4096)
            assert r.inflight == 0
        with pytest.raises(TypeError, match="position must be an int"):
            r.submit(0, f.fileno(), b.address, 4096, 0.5, b, "dma_read", f.path)
        assert r.inflight == 0
        assert await f.dma_read(0, b) == 4096
        await f.close()

    run(main())


def test_sloppy_write_racing_close_lands_in_its_own_file(run, scratch):
    """The write close() admitted lands in a.dat; b.dat (same fd number later) stays untouched."""
    async def main():
        a = await ioengine.open_file_dma(scratch / "a.dat", O.RW | O.CREATE | O.TRUNCATE,
                                         FileOpenOptions(sloppy_size=True))
        buf = a.allocate_buffer(4096)
        buf[:] = b"A" * 4096
        late = asyncio.ensure_future(a.dma_write(0, buf))
        await asyncio.sleep(0)  # the write now waits for the file to grow
        fd_a = a.fileno()
        await a.close()
        (scratch / "b.dat").write_bytes(b"B" * 8192)
        b = await ioengine.open_file_dma(scratch / "b.dat", O.RW)
        assert await late == 4096
        await b.close()
        return fd_a, b

    fd_a, b = run(main())
    assert (scratch / "b.dat").read_bytes() == b"B" * 8192
    assert (scratch / "a.dat").read_bytes() == b"A" * 4096  # cut back to what was written


def test_write_after_close_began_is_refused_not_ebadf(run, scratch):
    async def main():
        f = await _file(scratch, size=1 << 20)
        bufs = [f.allocate_buffer(65536) for _ in range(8)]
        inflight = [asyncio.ensure_future(f.dma_write(i * 65536, b)) for i, b in enumerate(bufs)]  # issued
        closing = asyncio.ensure_future(f.close())
        await asyncio.sleep(0)  # close() has begun and waits for the writes in flight
        assert not closing.done()
        b = f.allocate_buffer(4096)
        for call in (lambda: f.dma_write(0, b), lambda: f.dma_read(0, b), lambda: f.flush(),
                     lambda: f.truncate(0), lambda: f.size(), lambda: f.allocate(0, 4096)):
            with pytest.raises(ClosedFileError):
                await call()
        assert [await w for w in inflight] == [65536] * 8
        await closing
        assert ioengine.get_reactor().inflight == 0

    run(main())


def test_ops_admitted_before_close_complete_first(run, scratch):
    """truncate and flush issued before close() finish on the right file; the fd goes after them."""
    async def main():
        f = await _file(scratch, size=1 << 16)
        b = f.allocate_buffer(4096)
        w = asyncio.ensure_future(f.dma_write(0, b))
        await asyncio.sleep(0)
        t = asyncio.ensure_future(f.truncate(8192))
        fl = asyncio.ensure_future(f.flush())
        await asyncio.sleep(0)
        await f.close()
        assert t.done() and fl.done() and w.done()
        await t
        await fl
        assert await w == 4096

    run(main())
    assert (scratch / "f.dat").stat().st_size == 8192


def test_cancelled_close_still_closes_after_io(run, scratch):
    async def main():
        f = await _file(scratch, size=1 << 20)
        bufs = [f.allocate_buffer(65536) for _ in range(4)]
        writes = [asyncio.ensure_future(f.dma_write(i * 65536, b)) for i, b in enumerate(bufs)]  # issued
        closer = asyncio.ensure_future(f.close())
        await asyncio.sleep(0)
        closer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closer
        await f.close()  # waits for the one close sequence
        assert f.closed and ioengine.get_reactor().inflight == 0
        assert [await w for w in writes] == [65536] * 4

    run(main())


PATH_FUNCS = [
    ("open_file_dma", lambda p: ioengine.open_file_dma(p)),
    ("remove_file", lambda p: ioengine.remove_file(p)),
    ("file_exists", lambda p: ioengine.file_exists(p)),
    ("file_size", lambda p: ioengine.file_size(p)),
    ("file_stat", lambda p: ioengine.file_stat(p)),
    ("rename_file", lambda p: ioengine.rename_file(p, p + ".new")),
    ("rename_file to", lambda p: ioengine.rename_file(p.split("\0")[0], p)),
    ("link_file", lambda p: ioengine.link_file(p.split("\0")[0], p)),
    ("make_directory", lambda p: ioengine.make_directory(p)),
    ("touch_directory", lambda p: ioengine.touch_directory(p)),
    ("recursive_touch_directory", lambda p: ioengine.recursive_touch_directory(p)),
    ("sync_directory", lambda p: ioengine.sync_directory(p)),
    ("fs_avail", lambda p: ioengine.fs_avail(p)),
    ("fs_free", lambda p: ioengine.fs_free(p)),
]


@pytest.mark.parametrize("name,call", PATH_FUNCS, ids=[n for n, _ in PATH_FUNCS])
def test_nul_in_path_is_refused(run, scratch, name, call):
    keep = scratch / "keep"
    keep.write_bytes(b"x" * 4096)

    async def main():
        for p in (str(keep) + "\0.tmp", str(keep) + "\0"):
            with pytest.raises(ValueError, match="null byte"):
                await call(p)
        with pytest.raises(ValueError, match="null byte"):
            await call_bytes(os.fsencode(str(keep) + "\0.tmp"))
        with pytest.raises(ValueError, match="null byte"):
            async for _ in ioengine.list_directory(str(scratch) + "\0"):
                pass

    async def call_bytes(p: bytes):
        return await call(os.fsdecode(p))

    run(main())
    assert keep.read_bytes() == b"x" * 4096
    assert sorted(x.name for x in scratch.iterdir()) == ["keep"]


def test_paths_as_str_bytes_and_pathlike(run, scratch):
    async def main():
        p = scratch / "p.dat"
        p.write_bytes(b"y" * 4096)
        for form in (str(p), os.fsencode(str(p)), p):
            assert await ioengine.file_exists(form)
            assert await ioengine.file_size(form) == 4096
            async with await ioengine.open_file_dma(form) as f:
                assert bytes(await f.dma_read_exactly(0, 3)) == b"yyy"
        with pytest.raises(TypeError, match="path must be str, bytes or os.PathLike"):
            await ioengine.file_exists(3)
        await ioengine.rename_file(os.fsencode(str(p)), scratch / "q.dat")
        await ioengine.remove_file(os.fsencode(str(scratch / "q.dat")))
        assert not await ioengine.file_exists(scratch / "q.dat")

    run(main())


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_reactors_close_with_their_loops(backend, scratch, loop_kind):
    """Threads that each call plain asyncio.run() and use ioengine leave no ring or fd behind."""
    import threading

    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
    p = scratch / "f"
    p.write_bytes(b"z" * 4096)
    ioengine.configure(backend=backend)
    errors: list[BaseException] = []

    async def use():
        async with await ioengine.open_file_dma(p) as f:
            assert bytes(await f.dma_read_bulk(0, 3)) == b"zzz"

    def thread_main():
        try:
            ioengine.configure(backend=backend)
            if loop_kind == "uvloop":
                uvloop.run(use())
            else:
                asyncio.run(use())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    warm = threading.Thread(target=thread_main)  # the loop library's own one-time descriptors
    warm.start()
    warm.join()
    before = _fds()
    threads = [threading.Thread(target=thread_main) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _fds() == before


def test_run_with_a_bad_option_leaves_no_never_awaited_warning(recwarn):
    async def main():
        return 1

    coro = main()
    with pytest.raises(TypeError, match="unknown reactor option"):
        ioengine.run(coro, bogus=1)
    import gc
    del coro
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


@pytest.mark.parametrize("kw, exc, words", [
    (dict(io_properties=123), TypeError, "io_properties must be YAML text"),
    (dict(io_properties_file=5), TypeError, "io_properties_file must be a path"),
    (dict(io_latency_goal_ms="x"), ValueError, "io_latency_goal_ms must be a positive number"),
    (dict(io_latency_goal_ms=0), ValueError, "io_latency_goal_ms must be a positive number"),
])
def test_optional_reactor_options_are_checked_when_made(kw, exc, words):
    with pytest.raises(exc, match=words):
        ioengine.ReactorOptions(**kw)

    async def main():
        return 1

    coro = main()
    with pytest.raises(exc, match=words):  # and run() says so before it starts anything
        ioengine.run(coro, **kw)


@pytest.mark.parametrize("shares", [float("inf"), float("nan"), 0, -1, True, "x"])
def test_io_class_shares_follow_iosched_rule(shares):
    """One rule for shares (iosched.check_shares): refused when the class is made, not at its first I/O."""
    with pytest.raises(ValueError, match="shares must be a positive finite number"):
        ioengine.IoClass(f"bad-{shares!r}", shares=shares)


def test_vectors_beyond_iov_max_do_the_part_the_kernel_takes(run, scratch):
    """Seastar's behaviour: dma_readv/dma_writev of more than IOV_MAX buffers transfer the first
    IOV_MAX and return a short count; the caller's loop goes on from there."""
    from ioengine.file import IOV_MAX

    async def main():
        f = await ioengine.open_file_dma(scratch / "v", O.RW | O.CREATE)
        bs = f.disk_write_dma_alignment
        bufs = [f.allocate_buffer(bs) for _ in range(IOV_MAX + 3)]
        for i, b in enumerate(bufs):
            b[:] = bytes([i % 251]) * bs
        done, pos = 0, 0
        while done < len(bufs):  # the caller's loop
            n = await f.dma_writev(pos, bufs[done:])
            assert n == min(IOV_MAX, len(bufs) - done) * bs
            done += n // bs
            pos += n
        back = [f.allocate_buffer(bs) for _ in range(IOV_MAX + 3)]
        assert await f.dma_readv(0, back) == IOV_MAX * bs
        assert all(bytes(back[i]) == bytes([i % 251]) * bs for i in range(IOV_MAX))
        await f.close()

    run(main())


def test_truncate_through_the_ring_or_the_pool_names_its_errors(run, scratch):
    """truncate is an io_uring op where the kernel has it (6.9+), ftruncate on the pool otherwise;
    either way the size is set and an error names the operation and the path."""
    p = scratch / "t"
    p.write_bytes(b"x" * 8192)

    async def main():
        async with await ioengine.open_file_dma(p, O.RW) as f:
            await f.truncate(4096)
            assert await f.size() == 4096
            await f.truncate(65536)
            assert await f.size() == 65536
        async with await ioengine.open_file_dma(p, O.RO) as f:  # not open for writing
            with pytest.raises(OSError) as ei:
                await f.truncate(0)
        return ei.value

    err = run(main())
    assert "truncate" in str(err) and err.filename == str(p)
    assert p.stat().st_size == 65536
