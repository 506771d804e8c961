"""Options validation and preallocation."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE, payload, read_os, write_os

MiB = 1 << 20


@pytest.mark.parametrize("cls, kwargs", [
    (FileInputStreamOptions, {"buffer_size": 0}),
    (FileInputStreamOptions, {"buffer_size": -4096}),
    (FileInputStreamOptions, {"read_ahead": -1}),
    (FileOutputStreamOptions, {"buffer_size": 0}),
    (FileOutputStreamOptions, {"write_behind": 0}),
    (FileOutputStreamOptions, {"write_behind": -1}),
    (FileOutputStreamOptions, {"preallocation_size": -1}),
])
def test_invalid_options(cls, kwargs):
    with pytest.raises(ValueError) as ei:
        cls(**kwargs)
    name = next(iter(kwargs))
    assert name in str(ei.value), f"the message should name {name}: {ei.value}"


def test_valid_edge_options():
    assert FileInputStreamOptions(read_ahead=0).read_ahead == 0
    assert FileOutputStreamOptions(preallocation_size=0, write_behind=1).write_behind == 1
    d = FileInputStreamOptions()
    assert (d.buffer_size, d.read_ahead, d.dynamic_adjustments) == (131072, 4, False)
    o = FileOutputStreamOptions()
    assert (o.buffer_size, o.write_behind, o.preallocation_size) == (131072, 4, MiB)


def test_invalid_stream_arguments(run_default, scratch):
    path = scratch / "f"
    write_os(path, b"x" * 10_000)

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        align = f.disk_write_dma_alignment
        for offset in (1, 100, align // 2, align + 512 if align > 512 else align + 1):
            with pytest.raises(ValueError) as ei:
                make_file_output_stream(f, offset=offset)
            assert str(align) in str(ei.value) and str(offset) in str(ei.value), ei.value
        with pytest.raises(ValueError):
            make_file_input_stream(f, -1)
        with pytest.raises(ValueError):
            make_file_input_stream(f, 0, -1)
        stream = make_file_input_stream(f)
        for call in (lambda: stream.read_exactly(-1), lambda: stream.read_up_to(-1), lambda: stream.skip(-1)):
            with pytest.raises(ValueError):
                await call()
        await stream.close()
        await f.close()

    run_default(body())
    assert read_os(path) == b"x" * 10_000, "a refused stream must not touch the file"


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    with open("/proc/self/mounts") as fh:
        for line in fh:
            _, mnt, fstype = line.split()[:3]
            if str(path).startswith(mnt.rstrip("/") + "/") and len(mnt) > len(best):
                best, kind = mnt, fstype
    return kind


@pytest.fixture
def ext4_or_xfs(scratch: Path) -> Path:
    kind = _fs_type(scratch)
    if kind not in ("ext4", "xfs"):
        pytest.skip(f"preallocated blocks are only checked on ext4/xfs, the scratch dir is on {kind!r}")
    return scratch


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


async def _write_and_flush(path: Path, nbytes: int, opts: FileOutputStreamOptions):
    f = await ioengine.open_file_dma(path, CREATE)
    stream = make_file_output_stream(f, opts)
    await stream.write(payload(nbytes, nbytes))
    await stream.flush()
    return stream


@pytest.mark.parametrize("nbytes", [100 * 1024, 1000 * 1024])
def test_preallocation_after_aligned_flush(run_default, ext4_or_xfs, nbytes):
    """Full buffers written and flushed: 1 MiB extents are reserved ahead, size is the logical length."""
    path = ext4_or_xfs / "f"

    async def body():
        stream = await _write_and_flush(path, nbytes, FileOutputStreamOptions(buffer_size=4096,
                                                                             preallocation_size=MiB))
        st = os.stat(path)
        assert st.st_size == nbytes
        assert st.st_blocks * 512 >= MiB, f"only {st.st_blocks * 512} bytes allocated"
        await stream.close()

    run_default(body())
    assert read_os(path) == payload(nbytes, nbytes)


def test_preallocation_brief_case(run_default, ext4_or_xfs):
    """preallocation_size=1 MiB (default buffers): write 100 KiB, flush; before close the blocks
    reserved reach 1 MiB while st_size is 100 KiB."""
    path = ext4_or_xfs / "f"

    async def body():
        stream = await _write_and_flush(path, 100 * 1024, FileOutputStreamOptions(preallocation_size=MiB))
        st = os.stat(path)
        await stream.close()
        assert st.st_size == 100 * 1024
        assert st.st_blocks * 512 >= MiB, f"only {st.st_blocks * 512} bytes allocated"

    run_default(body())


def test_preallocation_survives_unaligned_flush(run_default, ext4_or_xfs):
    path = ext4_or_xfs / "f"

    async def body():
        opts = FileOutputStreamOptions(buffer_size=4096, preallocation_size=MiB)
        stream = await _write_and_flush(path, 100 * 1024 + 100, opts)  # 25 full buffers + 100 bytes
        first = os.stat(path)
        await stream.write(payload(7, 200 * 1024))
        await stream.flush()
        second = os.stat(path)
        await stream.close()
        assert first.st_size == 100 * 1024 + 100 and second.st_size == 300 * 1024 + 100
        assert first.st_blocks * 512 >= MiB, f"after the 1st flush only {first.st_blocks * 512} bytes allocated"
        assert second.st_blocks * 512 >= MiB, f"after the 2nd flush only {second.st_blocks * 512} bytes allocated"

    run_default(body())


def test_no_preallocation(run_default, ext4_or_xfs):
    """preallocation_size=0: no blocks beyond the data (rounded to the filesystem block)."""
    path = ext4_or_xfs / "f"
    nbytes = 100 * 1024

    async def body():
        stream = await _write_and_flush(path, nbytes, FileOutputStreamOptions(buffer_size=4096,
                                                                             preallocation_size=0))
        st = os.stat(path)
        await stream.close()
        assert st.st_size == nbytes
        assert st.st_blocks * 512 <= nbytes + 2 * 4096, f"{st.st_blocks * 512} bytes allocated for {nbytes}"

    run_default(body())
    assert _allocated(path) <= nbytes + 2 * 4096


@pytest.mark.parametrize("nbytes", [2 * MiB, 2 * MiB + 100])
def test_close_gives_back_reserved_blocks(run_default, ext4_or_xfs, nbytes):
    """After close no block reserved ahead is left past the end of the file, whether the data
    ends on a buffer boundary (no tail to write) or not."""
    path = ext4_or_xfs / "f"

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(preallocation_size=MiB))
        data = payload(3, nbytes)
        for i in range(0, nbytes, 65536):
            await stream.write(data[i:i + 65536])
        await stream.close()

    run_default(body())
    st = os.stat(path)
    assert st.st_size == nbytes
    assert st.st_blocks * 512 <= nbytes + 2 * 4096, f"{st.st_blocks * 512} bytes allocated for {nbytes}"
    assert read_os(path) == payload(3, nbytes)


def test_reservation_grows_the_file_until_flush(run_default, ext4_or_xfs):
    """Reserved space extends the file (so the writes land inside it, not past its end: ext4
    runs those one at a time); flush() and close() cut it back to the exact length."""
    path = ext4_or_xfs / "f"
    bs = 128 * 1024
    data = payload(7, 5 * bs + 1000)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=bs, preallocation_size=MiB))
        await stream.write(data[:3 * bs])
        grown = os.stat(path).st_size
        await stream.flush()
        flushed = os.stat(path).st_size
        await stream.write(data[3 * bs:])
        await stream.close()
        return grown, flushed

    grown, flushed = run_default(body())
    assert grown >= MiB, f"the reservation should have grown the file to >= 1 MiB, it is {grown}"
    assert flushed == 3 * 128 * 1024
    assert read_os(path) == data


def test_no_reservation_inside_an_existing_file(run_default, ext4_or_xfs, monkeypatch):
    """Overwriting space the file already has reserves nothing (fallocate would wait for every
    write in flight), and an aligned end leaves the rest of the file as it was."""
    from ioengine.file import FileSink
    path = ext4_or_xfs / "f"
    old = payload(1, 8 * MiB)
    write_os(path, old)
    calls = []
    real = FileSink.reserve

    async def counting(self, pos, length, keep_size):
        calls.append((pos, length, keep_size))
        return await real(self, pos, length, keep_size)

    monkeypatch.setattr(FileSink, "reserve", counting)
    new = payload(2, 4 * MiB)

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.WO)
        async with make_file_output_stream(f, FileOutputStreamOptions(preallocation_size=MiB)) as out:
            await out.write(new)

    run_default(body())
    assert calls == []
    assert read_os(path) == new + old[4 * MiB:]


@pytest.mark.parametrize("write_behind", [1, 2, 4])
def test_write_behind_window_is_used_and_never_exceeded(run_default, scratch, write_behind):
    """At most write_behind writes are in the kernel at once (completions hand their slot to the
    next full buffer from the callback), the window does fill, and at most write_behind full
    buffers wait outside it."""
    path = scratch / "f"
    bs = 64 * 1024
    data = payload(3, 40 * bs + 123)
    seen = {"now": 0, "max": 0, "pending": 0}

    class Counting(ioengine.File):
        __slots__ = ()

        def _issue_write(self, pos, buf, io_class=None, on_done=None):
            seen["now"] += 1
            seen["max"] = max(seen["max"], seen["now"])

            def done(req, res):
                seen["now"] -= 1
                if on_done is not None:
                    on_done(req, res)

            return super()._issue_write(pos, buf, io_class, done)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        f.__class__ = Counting
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=bs, write_behind=write_behind))
        step = 5 * bs + 123  # one call fills several buffers without yielding: the window fills
        for i in range(0, len(data), step):
            await out.write(data[i:i + step])
            seen["pending"] = max(seen["pending"], len(out._pending))
        await out.close()

    run_default(body())
    assert seen["max"] == write_behind
    assert seen["pending"] <= write_behind
    assert seen["now"] == 0
    assert read_os(path) == data


def test_reservations_grow_with_the_file(run_default, ext4_or_xfs, monkeypatch):
    """A long write makes few reservations (each drains the window), growing with what was
    written, and the file never runs more than RESERVE_AHEAD_MAX (+ a step) past the data."""
    import ioengine.fstream as fstream
    from ioengine.file import FileSink
    path = ext4_or_xfs / "f"
    calls = []
    real = FileSink.reserve

    async def counting(self, pos, length, keep_size):
        calls.append((pos, length))
        return await real(self, pos, length, keep_size)

    monkeypatch.setattr(FileSink, "reserve", counting)
    monkeypatch.setattr(fstream, "RESERVE_AHEAD_MAX", 4 * MiB)
    chunk = payload(5, 256 * 1024)
    total = 24 * MiB
    worst = []

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(preallocation_size=MiB))
        written = 0
        while written < total:
            await out.write(chunk)
            written += len(chunk)
            worst.append(os.stat(path).st_size - written)
        await out.close()

    run_default(body())
    lengths = [n for _, n in calls]
    assert 3 <= len(calls) <= 10, calls  # 1 MiB steps would take 24
    assert lengths[1] > lengths[0] and max(lengths) <= 4 * MiB + MiB, calls
    assert max(worst) <= 4 * MiB + 2 * MiB
    assert os.path.getsize(path) == total
    assert read_os(path) == chunk * (total // len(chunk))
