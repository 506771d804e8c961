"""What a commit (write + flush) costs in operations, and what the file looks like between commits
(issue 18, item 1): a flush writes only the blocks it adds to, truncates only when the file is
longer than the data, and with ``trim_on_flush=False`` never before close()."""
from __future__ import annotations

import os

import pytest

import ioengine
from ioengine import File
from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream

from streams_util import CREATE, payload, read_os


def _count_ops(monkeypatch) -> dict:
    """Count the File calls a stream makes (the real calls still run)."""
    counts = {"truncate": 0, "write_bytes": 0, "writes": 0}
    real_truncate, real_write, real_issue = File.truncate, File.dma_write, File._issue_write

    async def truncate(self, length):
        counts["truncate"] += 1
        await real_truncate(self, length)

    async def dma_write(self, pos, buf, io_class=None):
        counts["writes"] += 1
        counts["write_bytes"] += len(buf)
        return await real_write(self, pos, buf, io_class)

    def issue_write(self, pos, buf, io_class=None, on_done=None):  # the stream's full buffers
        counts["writes"] += 1
        counts["write_bytes"] += len(buf)
        return real_issue(self, pos, buf, io_class, on_done)

    monkeypatch.setattr(File, "truncate", truncate)
    monkeypatch.setattr(File, "_issue_write", issue_write)
    monkeypatch.setattr(File, "dma_write", dma_write)
    return counts


def test_aligned_commits_write_what_they_add_and_never_truncate(run, scratch, monkeypatch):
    """40 KB commits (block multiples) into a 128 KiB buffer: each flush writes its own 40 KB, not
    the buffer's whole content again (nor does the full buffer's write when the 4th commit fills
    it), and the file's size is right without a truncate."""
    counts = _count_ops(monkeypatch)
    path = scratch / "f"
    data = payload(1, 5 * 40960)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f)
        for i in range(5):
            await out.write(data[i * 40960:(i + 1) * 40960])
            await out.flush()
            assert os.stat(path).st_size == (i + 1) * 40960
            assert read_os(path) == data[:(i + 1) * 40960]
        assert counts["truncate"] == 0
        assert counts["write_bytes"] == 5 * 40960, "every byte written once"
        writes = counts["writes"]
        await out.flush()  # nothing new: no write
        assert counts["writes"] == writes
        await out.close()

    run(body())
    assert read_os(path) == data


@pytest.mark.parametrize("prealloc", [0, 1 << 20])
def test_no_trim_on_flush(run, scratch, monkeypatch, prealloc):
    """trim_on_flush=False: flushes never truncate; the file holds the data, then zeros (the padded
    block, and with preallocation the reserved space) up to its size; close() cuts it to the data."""
    counts = _count_ops(monkeypatch)
    path = scratch / "f"
    data = payload(2, 50_000)
    opts = FileOutputStreamOptions(buffer_size=16384, trim_on_flush=False, preallocation_size=prealloc)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, opts)
        pos = 0
        for n in (100, 5000, 1, 20_000, 4095):
            await out.write(data[pos:pos + n])
            pos += n
            await out.flush()
            assert out.durable_position == pos
            disk = read_os(path)
            assert len(disk) >= -(-pos // 4096) * 4096, "at least block-rounded"
            if not prealloc:
                assert len(disk) == -(-pos // f.disk_write_dma_alignment) * f.disk_write_dma_alignment
            assert disk[:pos] == data[:pos]
            assert disk[pos:] == bytes(len(disk) - pos), "zeros past durable_position"
        assert counts["truncate"] == 0
        await out.write(data[pos:])
        await out.close()
        assert counts["truncate"] == 1

    run(body())
    assert read_os(path) == data


def test_trim_on_flush_checked(run_default):
    with pytest.raises(TypeError, match="trim_on_flush must be True or False"):
        FileOutputStreamOptions(trim_on_flush=1)  # type: ignore[arg-type]


def test_trimming_commits_keep_the_size_exact(run, scratch):
    """The default: after every flush the file's size is the data's, however it ends."""
    path = scratch / "f"
    data = payload(3, 300_000)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=65536))
        pos = 0
        for n in (1, 40960, 4095, 131072, 7, 65536 - 7, 20_000):
            await out.write(data[pos:pos + n])
            pos += n
            await out.flush()
            assert os.stat(path).st_size == pos
        await out.write(data[pos:])
        await out.close()

    run(body())
    assert read_os(path) == data


def test_reader_sees_durable_data_while_not_trimmed(run, scratch):
    """A reader on another descriptor reads up to durable_position while the writer keeps the
    file rounded up (the documented way to read a file that is still being committed to)."""
    path = scratch / "f"
    data = payload(4, 10_001)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(trim_on_flush=False))
        await out.write(data)
        await out.flush()
        g = await ioengine.open_file_dma(path)
        async with ioengine.make_file_input_stream(g, 0, out.durable_position, close_file=True) as s:
            got = bytearray()
            async for chunk in s:
                got += chunk
        assert bytes(got) == data
        await out.close()

    run(body())


@pytest.mark.parametrize("trim_on_flush", [True, False])
def test_dsync_file_needs_no_fdatasync(run, scratch, monkeypatch, trim_on_flush):
    """On a file opened with OpenFlags.DSYNC a completed write is durable: flush() issues no
    fdatasync, except to make a truncate durable (O_DSYNC does not cover one): at every flush
    that cut the file (trim_on_flush, data ending inside a block), and at close() without it."""
    syncs = []
    real_flush = File.flush

    async def counted_flush(self):
        syncs.append(None)
        await real_flush(self)

    monkeypatch.setattr(File, "flush", counted_flush)
    path = scratch / "f"
    data = payload(5, 3 * 40960 + 100)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE | ioengine.OpenFlags.DSYNC)
        out = make_file_output_stream(f, FileOutputStreamOptions(trim_on_flush=trim_on_flush))
        for i in range(3):
            await out.write(data[i * 40960:(i + 1) * 40960])
            await out.flush()
            assert out.durable_position == (i + 1) * 40960
        assert syncs == [], "aligned commits on an O_DSYNC file: no fdatasync"
        await out.write(data[3 * 40960:])
        await out.flush()
        assert out.durable_position == len(data)
        assert len(syncs) == (1 if trim_on_flush else 0)
        await out.close()
        assert len(syncs) == 1, "the truncate is made durable once"

    run(body())
    assert read_os(path) == data


def test_commits_do_not_leak_pool_buffers(run, scratch, monkeypatch):
    """A full buffer written from an offset (after a flush) goes back to the pool once written:
    200 commits filling ~60 buffers take their blocks from the first arena, carving no more."""
    from ioengine.buffers import BufferPool

    carved = []
    real_carve = BufferPool._carve

    def counting_carve(self, block_size):
        carved.append(block_size)
        return real_carve(self, block_size)

    monkeypatch.setattr(BufferPool, "_carve", counting_carve)
    path = scratch / "f"
    data = payload(6, 40960)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(trim_on_flush=False))
        for _ in range(200):
            await out.write(data)
            await out.flush()
        await out.close()

    run(body())
    assert len(carved) <= 1, f"arenas carved: {carved}"
    assert os.path.getsize(path) == 200 * 40960
