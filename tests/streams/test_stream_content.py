"""Byte-exact round trips: output stream (random write mixes, flushes) -> os read + input stream."""
from __future__ import annotations

import os
import random

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE, payload, read_os, read_stream, write_file, write_os

BLOCK = 131072
SIZES = [0, 1, 511, 4095, 4096, 4097, BLOCK, 3 * BLOCK,
         # "random" large sizes, fixed so that a failure names its case
         1_234_567, 5_000_011, 8 * 1024 * 1024 - 12_345]
READ_MODES = ("iter", "read", "read_exactly", "read_up_to")


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(run, scratch, size):
    rng = random.Random(size * 7919 + 1)
    data = payload(size, size)
    path = scratch / "f"
    out_opts = FileOutputStreamOptions(
        buffer_size=rng.choice([4096, 5000, 12288, 65536, BLOCK]) if size < (1 << 20) else rng.choice([65536, BLOCK]),
        write_behind=rng.choice([1, 2, 4]),
        preallocation_size=rng.choice([0, 1 << 20]))

    async def body():
        await write_file(path, data, rng, out_opts, flushes=rng.randint(1, 4))
        assert os.stat(path).st_size == size
        assert read_os(path) == data
        for mode in READ_MODES:
            buffer_size = rng.choice([4096, 65536, BLOCK]) if size < (1 << 20) else BLOCK
            in_opts = FileInputStreamOptions(buffer_size=buffer_size,
                                             read_ahead=rng.choice([0, 1, 4]),
                                             dynamic_adjustments=rng.random() < 0.5)
            got = await read_stream(path, mode, rng, options=in_opts)
            assert got == data, f"{mode}: {len(got)} bytes read of {size}, first difference at " \
                                f"{next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), size))}"

    run(body())


@pytest.mark.parametrize("size", [4097, 1_234_567])
def test_range_reads(run, scratch, size):
    """Middle offsets with a length (aligned or not), and to EOF with length None."""
    rng = random.Random(size)
    data = payload(size + 1, size)
    path = scratch / "f"
    write_os(path, data)
    cases = [(0, None), (1, None), (511, None), (512, 512), (4095, 2), (size // 2, None), (size - 1, None),
             (size - 1, 100), (size, None), (size + 5000, None), (size + 5000, 10), (7, 0), (0, size + 10)]
    for _ in range(6):
        off = rng.randrange(size)
        cases.append((off, rng.randint(1, size - off)))

    async def body():
        for off, length in cases:
            mode = rng.choice(READ_MODES)
            opts = FileInputStreamOptions(buffer_size=rng.choice([4096, 65536]), read_ahead=rng.choice([0, 2]))
            got = await read_stream(path, mode, rng, off, length, opts)
            want = data[off:] if length is None else data[off:off + length]
            assert got == want, f"offset {off} length {length} ({mode}): {len(got)} bytes, wanted {len(want)}"

    run(body())


@pytest.mark.parametrize("buffer_size", [4096, BLOCK])
def test_writes_after_flush(run, scratch, buffer_size):
    """write, flush, write more, flush, ... close: the tail block flush wrote is rewritten correctly,
    and the size on disk after each flush is what was written so far."""
    data = payload(99, 3 * BLOCK + 12_345)
    path = scratch / "f"
    # write sizes; None = flush. Includes flushes of an empty buffer, double flushes, a flush right
    # at a buffer boundary and tails that straddle one.
    plan = [None, 100, None, 5000, None, None, 1, None, -5101 % buffer_size, None, 7, 2 * BLOCK, None,
            4096, None, 511]

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=buffer_size))
        pos = 0
        for step in plan:
            if step is None:
                await stream.flush()
                assert os.stat(path).st_size == pos
                assert read_os(path) == data[:pos]
            else:
                await stream.write(data[pos:pos + step])
                pos += step
        await stream.write(data[pos:])
        await stream.close()
        assert os.stat(path).st_size == len(data)
        assert read_os(path) == data

    run(body())


def test_write_at_aligned_offset_keeps_prefix(run, scratch):
    path = scratch / "f"
    prefix = payload(1, 8192)
    data = payload(2, 10_000)
    write_os(path, prefix)

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=4096), offset=8192)
        await stream.write(data[:3000])
        await stream.flush()
        assert read_os(path) == prefix + data[:3000]
        await stream.write(data[3000:])
        await stream.close()

    run(body())
    assert read_os(path) == prefix + data


def test_write_copies_caller_data(run_default, scratch):
    """write() returns with the data copied: the caller may reuse its buffer at once."""
    path = scratch / "f"

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=4096, write_behind=4))
        scratchpad = bytearray(3000)
        want = bytearray()
        for i in range(40):
            scratchpad[:] = bytes([i]) * len(scratchpad)
            await stream.write(memoryview(scratchpad))
            want += scratchpad
        scratchpad[:] = b"\xff" * len(scratchpad)
        await stream.close()
        return bytes(want)

    want = run_default(body())
    assert read_os(path) == want


def test_empty_and_closed_output_stream(run_default, scratch):
    path = scratch / "f"

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        async with make_file_output_stream(f) as stream:
            await stream.write(b"")
            await stream.flush()
            assert os.stat(path).st_size == 0
        assert f.closed
        with pytest.raises(ioengine.ClosedFileError):
            await stream.write(b"x")
        with pytest.raises(ioengine.ClosedFileError):
            await stream.flush()
        await stream.close()  # closing twice is fine

    run_default(body())
    assert read_os(path) == b""


def test_read_ahead_stays_bounded(run, scratch):
    """At most read_ahead + 1 reads in flight (or MAX_DYNAMIC_READ_AHEAD + 1 when adapting)."""
    from ioengine.fstream import MAX_DYNAMIC_READ_AHEAD

    data = payload(5, 3 << 20)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        r = ioengine.get_reactor()
        for read_ahead, dynamic, bound in ((2, False, 3), (0, True, MAX_DYNAMIC_READ_AHEAD + 1)):
            f = await ioengine.open_file_dma(path)
            stream = make_file_input_stream(f, options=FileInputStreamOptions(
                buffer_size=16384, read_ahead=read_ahead, dynamic_adjustments=dynamic))
            out = bytearray()
            peak = 0
            async for chunk in stream:
                peak = max(peak, r.inflight)
                out += chunk
            assert bytes(out) == data
            assert peak <= bound, f"read_ahead={read_ahead} dynamic={dynamic}: {peak} reads in flight"
            await stream.close()
            await f.close()

    run(body())
