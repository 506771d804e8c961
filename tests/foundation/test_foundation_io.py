"""Data paths: dma_read / dma_write / dma_read_bulk / dma_read_exactly / readv / writev, checked
against what plain os.pread / os.pwrite see in the same file. Runs through every backend."""
from __future__ import annotations

import mmap
import os
import random

import pytest

import ioengine
from ioengine import OpenFlags as F

from foundation_util import pattern_block, read_file, write_pattern_file

RWC = F.RW | F.CREATE


def test_round_trips_at_many_sizes_and_offsets(run, scratch):
    path = scratch / "rt"

    async def main():
        async with await ioengine.open_file_dma(path, RWC | F.TRUNCATE) as f:
            wa, ra = f.disk_write_dma_alignment, f.disk_read_dma_alignment
            assert wa % ra == 0
            expected = bytearray()
            cases = []
            # sizes in write-alignment units, at offsets that are multiples of it (some far apart)
            for units, at in [(1, 0), (2, 1), (3, 5), (7, 16), (16, 40), (64, 100), (256, 400), (1, 1000)]:
                pos, n = at * wa, units * wa
                buf = f.allocate_buffer(n)
                data = os.urandom(n)
                buf[:] = data
                assert await f.dma_write(pos, buf) == n
                cases.append((pos, data))
                if len(expected) < pos + n:
                    expected.extend(bytes(pos + n - len(expected)))
                expected[pos:pos + n] = data
            for pos, data in cases:
                n = len(data)
                out = f.allocate_buffer(n)
                assert await f.dma_read(pos, out) == n
                assert bytes(out) == data
                # reads may use the finer read alignment: a sub-range read at read-aligned bounds
                if ra < wa:
                    sub = f.allocate_buffer(ra)
                    assert await f.dma_read(pos + ra, sub) == ra
                    assert bytes(sub) == bytes(expected[pos + ra:pos + 2 * ra])
            assert await f.size() == len(expected)
        # what the kernel holds, read through the page cache without ioengine
        assert read_file(path) == bytes(expected)

    run(main())


def test_read_is_short_at_eof(run, scratch):
    path = scratch / "short"
    data = os.urandom(5000)  # not a multiple of any alignment
    with open(path, "wb") as fh:
        fh.write(data)

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            ra = f.disk_read_dma_alignment
            big = f.allocate_buffer(8192)
            assert await f.dma_read(0, big) == 5000
            assert bytes(big[:5000]) == data
            tail_pos = 5000 // ra * ra
            tail = f.allocate_buffer(8192)
            assert await f.dma_read(tail_pos, tail) == 5000 - tail_pos
            assert bytes(tail[:5000 - tail_pos]) == data[tail_pos:]
            past = f.allocate_buffer(4096)
            assert await f.dma_read(64 * 1024, past) == 0

    run(main())


def test_dma_read_exactly(run, scratch):
    path = scratch / "exact"
    data = os.urandom(3 * 4096 + 100)
    with open(path, "wb") as fh:
        fh.write(data)

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            got = await f.dma_read_exactly(4096, 8192)
            assert isinstance(got, ioengine.DmaBuffer)
            assert len(got) == 8192 and bytes(got) == data[4096:4096 + 8192]
            # unaligned ranges too (it reads in bulk)
            got = await f.dma_read_exactly(1, 12288)
            assert bytes(got) == data[1:12289]
            with pytest.raises(ioengine.ShortReadError) as ei:
                await f.dma_read_exactly(8192, 8192)
            assert str(path) in str(ei.value)
            with pytest.raises(EOFError):
                await f.dma_read_exactly(len(data) + 4096, 1)
            # the file is still usable after the short read
            assert bytes(await f.dma_read_exactly(0, 10)) == data[:10]

    run(main())


def test_dma_read_bulk_unaligned_ranges_across_eof(run, scratch):
    path = scratch / "bulk"
    size = 3 * 4096 + 1234
    data = os.urandom(size)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    rng = random.Random(1234)
    ranges = [(0, 0), (0, 1), (1, 1), (511, 2), (4095, 2), (100, 5000), (0, size), (0, size + 1),
              (size - 1, 1), (size - 1, 100), (size, 10), (size + 1, 10), (size + 9000, 3), (4096, 4096),
              (size - 5000, 10000)]
    ranges += [(rng.randrange(0, size + 8192), rng.randrange(0, 20000)) for _ in range(40)]

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            for pos, n in ranges:
                got = await f.dma_read_bulk(pos, n)
                want = data[pos:pos + n]
                assert len(got) == len(want), (pos, n)
                assert bytes(got) == want, (pos, n)
                got.release()

    run(main())


def test_readv_writev(run, scratch):
    path = scratch / "vec"

    async def main():
        async with await ioengine.open_file_dma(path, RWC | F.TRUNCATE) as f:
            wa = f.disk_write_dma_alignment
            sizes = [wa, 3 * wa, wa, 2 * wa]
            bufs = [f.allocate_buffer(n) for n in sizes]
            chunks = [os.urandom(n) for n in sizes]
            for b, c in zip(bufs, chunks):
                b[:] = c
            total = sum(sizes)
            assert await f.dma_writev(wa, bufs) == total
            assert await f.size() == wa + total
            outs = [f.allocate_buffer(n) for n in reversed(sizes)]
            assert await f.dma_readv(wa, outs) == total
            assert b"".join(bytes(o) for o in outs) == b"".join(chunks)
            # readv is short at EOF (what lands in the buffers past the end is the kernel's business)
            tail = [f.allocate_buffer(wa) for _ in range(3)]
            assert await f.dma_readv(wa + total - wa, tail) == wa
            assert bytes(tail[0]) == chunks[-1][-wa:]
        assert read_file(path) == bytes(wa) + b"".join(chunks)

    run(main())


def test_random_differential_against_os_pread_pwrite(run, scratch):
    """Seeded random mix: ioengine writes checked with os.pread, os.pwrite checked with ioengine
    reads (aligned dma_read and unaligned dma_read_bulk), on the same file."""
    path = scratch / "diff"
    rng = random.Random(20240611)
    file_blocks = 64

    async def main():
        async with await ioengine.open_file_dma(path, RWC | F.TRUNCATE) as f:
            wa, ra = f.disk_write_dma_alignment, f.disk_read_dma_alignment
            limit = file_blocks * wa
            model = bytearray()
            osfd = os.open(path, os.O_RDWR)  # buffered: the kernel keeps it coherent with O_DIRECT
            try:
                for step in range(150):
                    op = rng.choice(("io_write", "os_write", "io_read", "bulk", "os_read"))
                    if op == "io_write":
                        pos = rng.randrange(0, file_blocks) * wa
                        n = rng.randint(1, 8) * wa
                        data = rng.randbytes(n)
                        buf = f.allocate_buffer(n)
                        buf[:] = data
                        assert await f.dma_write(pos, buf) == n
                        buf.release()
                        _apply(model, pos, data)
                        assert os.pread(osfd, n, pos) == data, step
                    elif op == "os_write":
                        pos = rng.randrange(0, limit)
                        data = rng.randbytes(rng.randint(1, 3 * wa))
                        assert os.pwrite(osfd, data, pos) == len(data)
                        _apply(model, pos, data)
                        got = await f.dma_read_bulk(pos, len(data))
                        assert bytes(got) == data, step
                    elif op == "io_read":
                        pos = rng.randrange(0, (limit + 4 * wa) // ra) * ra
                        n = rng.randint(1, 16) * ra
                        buf = f.allocate_buffer(n)
                        got = await f.dma_read(pos, buf)
                        want = bytes(model[pos:pos + n])
                        assert got == len(want), step
                        assert bytes(buf[:got]) == want, step
                        buf.release()
                    elif op == "bulk":
                        pos = rng.randrange(0, limit + wa)
                        n = rng.randint(0, 3 * wa)
                        got = await f.dma_read_bulk(pos, n)
                        assert bytes(got) == bytes(model[pos:pos + n]), step
                    else:
                        pos = rng.randrange(0, limit)
                        n = rng.randint(1, 2 * wa)
                        assert os.pread(osfd, n, pos) == bytes(model[pos:pos + n]), step
                assert await f.size() == len(model) == os.fstat(osfd).st_size
            finally:
                os.close(osfd)
        assert read_file(path) == bytes(model)

    run(main())


def _apply(model: bytearray, pos: int, data: bytes) -> None:
    if len(model) < pos + len(data):
        model.extend(bytes(pos + len(data) - len(model)))
    model[pos:pos + len(data)] = data


def test_any_aligned_writable_buffer_works(run, scratch):
    """The buffer protocol, not the DmaBuffer type, is what dma_read/dma_write need: an anonymous
    mmap is page-aligned and works."""
    path = scratch / "mm"
    data = write_pattern_file(path, 4, 4096)

    async def main():
        async with await ioengine.open_file_dma(path, F.RW) as f:
            m = mmap.mmap(-1, 8192)
            assert await f.dma_read(4096, m) == 8192
            assert m[:] == data[4096:12288]
            m[:] = pattern_block(99, 8192)
            assert await f.dma_write(0, memoryview(m)) == 8192
            m.close()
            buf = ioengine.allocate_aligned_buffer(4096, 4096)
            assert await f.dma_read(0, memoryview(buf)) == 4096
            assert bytes(buf) == pattern_block(99, 8192)[:4096]

    run(main())


def test_large_offsets_and_large_requests(run, scratch):
    """64-bit offsets (past 4 GiB and 1 TiB, sparse) and a multi-MiB request, through every backend."""
    path = scratch / "far"

    async def main():
        async with await ioengine.open_file_dma(path, RWC | F.TRUNCATE) as f:
            wa = f.disk_write_dma_alignment
            for pos in ((1 << 32) + wa, (1 << 40) - wa):
                b = f.allocate_buffer(wa)
                b[:] = pattern_block(pos // wa, wa)
                assert await f.dma_write(pos, b) == wa
                got = await f.dma_read_exactly(pos, wa)
                assert bytes(got) == pattern_block(pos // wa, wa)
                assert await f.size() == pos + wa
                with open(path, "rb") as fh:
                    fh.seek(pos)
                    assert fh.read(wa) == pattern_block(pos // wa, wa)
            await f.truncate(0)
            n = 8 << 20
            big = f.allocate_buffer(n)
            data = os.urandom(n)
            big[:] = data
            assert await f.dma_write(0, big) == n
            out = f.allocate_buffer(n)
            assert await f.dma_read(0, out) == n
            assert bytes(out) == data

    run(main())
