"""Append (issue 18, item 4): ``make_file_output_stream(f, append=True)`` continues a file at its
end; a partial last block is read back and rewritten with its old bytes kept."""
from __future__ import annotations

import asyncio

import pytest

import ioengine
from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream

from streams_util import payload, read_os, write_os

RW = ioengine.OpenFlags.RW
RW_CREATE = ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE

#: Old sizes: empty, one byte, aligned, inside a block, past a stream buffer and inside a block.
OLD_SIZES = [0, 1, 3 * 4096, 10_000, 70_001]


@pytest.mark.parametrize("old_size", OLD_SIZES)
def test_append_keeps_the_old_bytes(run, scratch, old_size):
    """Small and large writes after the old end, a flush in the middle (the rewritten tail block
    must hold the old bytes, then the new ones), positions from the old size."""
    path = scratch / "f"
    old = payload(1, old_size)
    new = payload(2, 150_000)
    write_os(path, old)

    async def body():
        f = await ioengine.open_file_dma(path, RW)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=65536), append=True)
        assert (out.position, out.durable_position) == (old_size, old_size)
        await out.write(new[:7])
        assert out.position == old_size + 7
        await out.flush()
        assert out.durable_position == old_size + 7
        assert read_os(path) == old + new[:7], "the old tail was overwritten"
        await out.write(new[7:100_000])
        await out.write(new[100_000:])
        await out.close()
        assert out.position == out.durable_position == old_size + len(new)

    run(body())
    assert read_os(path) == old + new


@pytest.mark.parametrize("trim_on_flush", [True, False])
def test_append_reopen_append(run, scratch, trim_on_flush):
    """Several sessions each append to what the last one left (flushed, then closed)."""
    path = scratch / "log"
    pieces = [payload(10 + i, n) for i, n in enumerate([0, 5000, 1, 4095, 4096, 12_345, 200_000, 3])]
    opts = FileOutputStreamOptions(buffer_size=16384, trim_on_flush=trim_on_flush)

    async def body():
        expect = b""
        for piece in pieces:
            f = await ioengine.open_file_dma(path, RW_CREATE)
            async with make_file_output_stream(f, opts, append=True) as out:
                assert out.position == len(expect)
                await out.write(piece[:len(piece) // 2])
                await out.flush()
                await out.write(piece[len(piece) // 2:])
            expect += piece
            assert read_os(path) == expect
        return expect

    expect = run(body())
    assert read_os(path) == expect


def test_append_with_nothing_written_changes_nothing(run, scratch):
    path = scratch / "f"
    old = payload(3, 10_000)
    write_os(path, old)

    async def body():
        f = await ioengine.open_file_dma(path, RW)
        out = make_file_output_stream(f, append=True)
        await out.flush()
        assert out.durable_position == 10_000
        await out.close()

    run(body())
    assert read_os(path) == old


def test_append_cancelled_read_back_writes_nothing(run, scratch):
    """A write() cancelled while the old tail is read back accepts nothing; the next one works."""
    path = scratch / "f"
    old = payload(4, 6000)
    write_os(path, old)

    async def body():
        f = await ioengine.open_file_dma(path, RW)
        out = make_file_output_stream(f, append=True)
        task = asyncio.ensure_future(out.write(b"lost"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert out.position == 6000
        await out.write(b"kept")
        await out.close()

    run(body())
    assert read_os(path) == old + b"kept"


def test_append_refusals(run_default, scratch):
    """offset= with append=True, a non-bool append, and a write-only file that ends inside a block
    are refused when the stream is made, before any I/O; write-only is fine at a block boundary."""
    unaligned, aligned = scratch / "u", scratch / "a"
    write_os(unaligned, payload(5, 5000))
    write_os(aligned, payload(6, 8192))

    async def body():
        f = await ioengine.open_file_dma(unaligned, RW)
        with pytest.raises(ValueError, match="offset= cannot be given"):
            make_file_output_stream(f, offset=0, append=True)
        with pytest.raises(ValueError, match="offset= cannot be given"):
            make_file_output_stream(f, offset=4096, append=True)
        with pytest.raises(TypeError, match="append must be True or False"):
            make_file_output_stream(f, append=1)  # type: ignore[arg-type]
        await f.close()
        f = await ioengine.open_file_dma(unaligned, ioengine.OpenFlags.WO)
        with pytest.raises(ValueError, match="open it with OpenFlags.RW"):
            make_file_output_stream(f, append=True)
        await f.close()
        f = await ioengine.open_file_dma(aligned, ioengine.OpenFlags.WO)
        async with make_file_output_stream(f, append=True) as out:
            assert out.position == 8192
            await out.write(b"more")

    run_default(body())
    assert read_os(unaligned) == payload(5, 5000)
    assert read_os(aligned) == payload(6, 8192) + b"more"
