"""FileOpenOptions(buffered=True): a file opened without O_DIRECT, through the page cache, on
every backend. Any address, position and length; the data checked against plain os.pread."""
from __future__ import annotations

import os
import random

import pytest

import ioengine
from ioengine import FileOpenOptions
from ioengine import OpenFlags as F

from foundation_util import read_file

BUFFERED = FileOpenOptions(buffered=True)


def test_unaligned_writes_and_reads_round_trip(run, scratch):
    path = scratch / "b"
    rng = random.Random(14)

    async def main():
        expected = bytearray()
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE, BUFFERED) as f:
            assert not f.direct
            assert (f.memory_dma_alignment, f.disk_read_dma_alignment, f.disk_write_dma_alignment) == (1, 1, 1)
            for _ in range(40):
                pos, n = rng.randrange(0, 50_000), rng.randrange(1, 9000)
                data = rng.randbytes(n)
                # bytes, a bytearray slice at an odd address, a DmaBuffer: all taken as they are
                buf: object = data if n % 3 == 0 else memoryview(bytearray(b"x" + data))[1:]
                assert await f.dma_write(pos, buf) == n
                if len(expected) < pos + n:
                    expected.extend(bytes(pos + n - len(expected)))
                expected[pos:pos + n] = data
            assert await f.size() == len(expected)
            for _ in range(40):
                pos, n = rng.randrange(0, len(expected)), rng.randrange(1, 9000)
                out = bytearray(n + 1)
                got = await f.dma_read(pos, memoryview(out)[1:])
                want = bytes(expected[pos:pos + n])
                assert got == len(want) and bytes(out[1:1 + got]) == want
                bulk = await f.dma_read_bulk(pos, n)
                try:
                    assert bytes(bulk) == want
                finally:
                    bulk.release()
            # vectored, at an odd position with odd lengths
            parts = [b"abc", b"defgh", b"i"]
            assert await f.dma_writev(12_345, parts) == 9
            expected[12_345:12_354] = b"abcdefghi"
            outs = [bytearray(2), bytearray(7)]
            assert await f.dma_readv(12_345, outs) == 9
            assert b"".join(outs) == b"abcdefghi"
        # the page cache is the file: a plain read sees every byte
        assert read_file(path) == bytes(expected)

    run(main())


def test_buffered_read_is_short_at_eof_and_stream_writes_any_length(run, scratch):
    path = scratch / "s"

    async def main():
        async with await ioengine.open_file_dma(path, F.WO | F.CREATE, BUFFERED) as f:
            out = ioengine.make_file_output_stream(f, close_file=False)
            await out.write(b"0123456789" * 1000 + b"tail")
            await out.close()
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            assert await f.size() == 10_004
            buf = bytearray(100)
            assert await f.dma_read(10_000, buf) == 4
            assert bytes(buf[:4]) == b"tail"
            assert await f.dma_read(20_000, buf) == 0

    run(main())
    assert read_file(path) == b"0123456789" * 1000 + b"tail"


def test_default_is_still_o_direct(run, scratch):
    path = scratch / "d"

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            assert f.direct
            assert f.disk_write_dma_alignment > 1
            with pytest.raises(ValueError, match="not a multiple of"):
                await f.dma_write(3, b"abc")

    run(main())


@pytest.mark.parametrize("backend", ["io_uring"])
@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_bad_input_is_refused_before_the_kernel(run, scratch):
    path = scratch / "bad"
    path.write_bytes(b"x" * 100)

    async def main():
        with pytest.raises(TypeError, match="buffered must be a bool"):
            await ioengine.open_file_dma(path, F.RO, FileOpenOptions(buffered="yes"))  # type: ignore[arg-type]
        with pytest.raises(IsADirectoryError, match="a directory"):
            await ioengine.open_file_dma(scratch, F.RO, BUFFERED)
        with pytest.raises(FileNotFoundError):
            await ioengine.open_file_dma(scratch / "missing", F.RO, BUFFERED)
        async with await ioengine.open_file_dma(path, F.RO, BUFFERED) as f:
            with pytest.raises(ValueError, match="outside"):
                await f.dma_read(-1, bytearray(4))
            with pytest.raises(TypeError, match="writable"):
                await f.dma_read(0, b"read-only")
            with pytest.raises(OSError) as e:  # the kernel's: the file is open read-only
                await f.dma_write(0, b"abc")
            assert e.value.errno == 9 and str(path) in str(e.value)

    run(main())
    assert os.path.getsize(path) == 100


def test_writes_aligned_to_the_logical_block(run, scratch):
    """FileOpenOptions(align_writes_to_logical_block=True): O_DIRECT writes at the read alignment
    (the logical block), which the kernel accepts; the default stays at the physical block."""
    path = scratch / "lb"
    logical = FileOpenOptions(align_writes_to_logical_block=True)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            physical = f.disk_write_dma_alignment
        async with await ioengine.open_file_dma(path, F.RW, logical) as f:
            assert f.direct
            ra = f.disk_read_dma_alignment
            assert f.disk_write_dma_alignment == ra <= physical
            expected = bytearray(8 * physical)
            for i, pos in enumerate(range(ra, 8 * physical - ra, 3 * ra)):
                buf = f.allocate_buffer(ra)
                buf[:] = bytes([i + 1]) * ra
                assert await f.dma_write(pos, buf) == ra
                expected[pos:pos + ra] = bytes([i + 1]) * ra
            await f.truncate(len(expected))
            if ra > 1:
                with pytest.raises(ValueError, match=f"not a multiple of {ra}"):
                    await f.dma_write(ra // 2, f.allocate_buffer(ra))
        return bytes(expected)

    expected = run(main())
    assert read_file(path) == expected


@pytest.mark.parametrize("backend", ["io_uring"])
@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_logical_block_option_must_be_a_bool(run, scratch):
    async def main():
        with pytest.raises(TypeError, match="align_writes_to_logical_block must be a bool"):
            await ioengine.open_file_dma(scratch / "x", F.RW | F.CREATE,
                                         FileOpenOptions(align_writes_to_logical_block=1))  # type: ignore[arg-type]

    run(main())
    assert not (scratch / "x").exists()
