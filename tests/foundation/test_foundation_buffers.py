"""DmaBuffer (aligned memory with the buffer protocol) and the per-reactor buffer pool."""
from __future__ import annotations

import array
import gc
import random
import weakref
import zlib

import pytest

import ioengine
from ioengine import DmaBuffer


@pytest.mark.parametrize("align", [512, 4096, 8192, 65536, 1 << 21])
def test_allocate_aligned_buffer_alignment(align):
    for size in (0, 1, 511, 4096, 12345, 3 * align):
        b = ioengine.allocate_aligned_buffer(size, align)
        assert isinstance(b, ioengine.DmaBuffer)
        assert len(b) == size
        assert b.address % align == 0, (size, align, hex(b.address))
        assert b.alignment == align
        assert bytes(b) == bytes(size)  # fresh memory is zeroed
        b.release()


def test_bad_alignment_or_size():
    for align in (0, 3, 100, 4095):
        with pytest.raises(ValueError):
            ioengine.allocate_aligned_buffer(4096, align)
    with pytest.raises(ValueError):
        ioengine.allocate_aligned_buffer(-1)


def test_buffer_protocol_len_bytes_and_zero_copy_slices():
    b = ioengine.allocate_aligned_buffer(8192)
    assert len(b) == 8192
    mv = memoryview(b)
    assert mv.nbytes == 8192 and not mv.readonly and mv.c_contiguous
    b[0:5] = b"hello"
    assert bytes(b[0:5]) == b"hello"
    assert bytes(mv[:5]) == b"hello"  # the memoryview sees writes through the buffer
    assert b[0] == ord("h")
    # a slice is a zero-copy view: writing through it changes the buffer
    s = b[4096:4100]
    assert isinstance(s, memoryview)
    s[:] = b"WXYZ"
    assert bytes(b)[4096:4100] == b"WXYZ"
    mv[8000:8003] = b"abc"
    assert bytes(b[8000:8003]) == b"abc"
    assert bytes(b).startswith(b"hello")
    assert bytearray(b)[:5] == b"hello"
    with pytest.raises(TypeError):
        del b[0:1]
    del s, mv
    b.release()


def test_trim_shares_memory():
    b = ioengine.allocate_aligned_buffer(3 * 4096)
    t = b.trim(4096, 4096)
    assert isinstance(t, ioengine.DmaBuffer)
    assert len(t) == 4096
    assert t.address == b.address + 4096
    assert t.parent is b
    t[:4] = b"abcd"
    assert bytes(b[4096:4100]) == b"abcd"
    odd = b.trim(1, 10)
    assert odd.alignment == 1
    with pytest.raises(ValueError):
        b.trim(4096, 3 * 4096)
    with pytest.raises(ValueError):
        b.trim(-1, 1)
    # the parent's memory outlives its release while a trimmed child uses it
    b.release()
    assert b.released and not b.freed
    assert bytes(t[:4]) == b"abcd"
    t.release()
    odd.release()
    assert b.freed


def test_release_and_stale_references():
    b = ioengine.allocate_aligned_buffer(4096)
    mv = memoryview(b)
    b.release()
    assert b.released
    assert not b.freed  # an export still uses the memory
    mv[0] = 7  # still valid memory
    mv.release()
    assert b.freed
    b.release()  # idempotent
    assert len(b) == 0
    for access in (lambda: memoryview(b), lambda: bytes(b), lambda: b[0:1], lambda: b.address,
                   lambda: b.trim(0, 1)):
        with pytest.raises(ValueError):
            access()
    with pytest.raises(ValueError):
        b[0:1] = b"x"


def test_context_manager_releases():
    with ioengine.allocate_aligned_buffer(4096) as b:
        b[:1] = b"x"
    assert b.released and b.freed


def test_buffer_dropped_without_release_is_freed():
    b = ioengine.allocate_aligned_buffer(4096)
    r = weakref.ref(b)
    del b
    gc.collect()
    assert r() is None


def test_pool_reuse(run, scratch):
    path = scratch / "pool"
    path.write_bytes(b"\0" * 4096)

    async def main():
        reactor = ioengine.get_reactor()
        pool = reactor.buffers
        async with await ioengine.open_file_dma(path, ioengine.OpenFlags.RW) as f:
            idle0 = pool.idle()
            b1 = f.allocate_buffer(4096)
            assert b1.address % f.memory_dma_alignment == 0
            addr = b1.address
            b1[:5] = b"first"
            b1.release()
            assert pool.idle() == idle0 + 1  # back in the pool
            b2 = f.allocate_buffer(4096)
            assert pool.idle() == idle0  # taken out again
            assert b2.address == addr  # the same memory, reused
            # the stale reference cannot reach the new owner's data
            with pytest.raises(ValueError):
                memoryview(b1)
            with pytest.raises(ValueError):
                b1[0:5]
            assert len(b1) == 0
            # a smaller request is served from the same size class
            b2.release()
            b3 = f.allocate_buffer(1000)
            assert len(b3) == 1000 and b3.address == addr
            # a buffer in use by a view is not returned to the pool on release()
            mv = memoryview(b3)
            b3.release()
            assert pool.idle() == idle0 and not b3.freed
            mv.release()
            assert b3.freed
            # pooled buffers work for I/O
            b4 = f.allocate_buffer(4096)
            b4[:] = b"z" * 4096
            assert await f.dma_write(0, b4) == 4096
            b4.release()
            b5 = f.allocate_buffer(4096)
            assert await f.dma_read(0, b5) == 4096
            assert bytes(b5) == b"z" * 4096
            # large sizes bypass the pool
            big = f.allocate_buffer(4 << 20)
            assert len(big) == 4 << 20 and big.address % f.memory_dma_alignment == 0
            n = pool.idle()
            big.release()
            assert pool.idle() == n

    run(main())


def test_pool_depth_zero_disables_pooling(run):
    async def main():
        pool = ioengine.get_reactor().buffers
        b = pool.get(4096)
        b.release()
        assert pool.idle() == 0

    run(main(), buffer_pool_depth=0)


def test_pooled_buffer_dropped_without_release(run):
    """Dropping a pooled buffer without release() is safe: it is freed (or recycled) only once
    nothing uses it, and a buffer still in use by a view never goes back to the pool."""

    async def main():
        pool = ioengine.get_reactor().buffers
        idle0 = pool.idle()
        b = pool.get(4096)
        addr = b.address
        mv = memoryview(b)
        r = weakref.ref(b)
        del b
        gc.collect()
        assert r() is not None  # the view keeps it
        assert pool.idle() == idle0
        other = pool.get(4096)
        assert other.address != addr  # not handed out while the view exists
        mv[:3] = b"abc"
        del mv
        gc.collect()
        assert r() is None
        assert pool.idle() <= idle0 + 1  # back in the pool, or freed: either is fine
        other.release()

    run(main())


def test_large_buffers_start_on_a_huge_page():
    b = ioengine.allocate_aligned_buffer(4 << 20, 4096)
    assert b.address % (2 << 20) == 0
    b[len(b) - 1] = 7  # the whole allocation is usable
    assert bytes(b[:16]) == bytes(16)  # and zeroed
    b.release()


def test_pool_cuts_large_blocks_from_shared_arenas():
    from ioengine.buffers import ARENA_BLOCK_MIN, HUGE_PAGE, BufferPool

    pool = BufferPool(depth=64)
    bufs = [pool.get(ARENA_BLOCK_MIN * 2) for _ in range(3)]
    arenas = {b.address // HUGE_PAGE for b in bufs}
    assert len(arenas) == 1, "blocks of one size class come from the same 2 MiB arena"
    assert len({b.address for b in bufs}) == 3
    # The rest of the arena waits in the free list; released blocks come back to it.
    idle = pool.idle()
    assert idle == HUGE_PAGE // (ARENA_BLOCK_MIN * 2) - 3
    for i, b in enumerate(bufs):
        b[:4] = bytes([i]) * 4
        b.release()
    assert pool.idle() == idle + 3
    again = pool.get(ARENA_BLOCK_MIN * 2)
    assert again.address // HUGE_PAGE in arenas and bytes(again[:4]) in (bytes([i]) * 4 for i in range(3))


def test_arena_depth_is_bounded():
    from ioengine.buffers import BufferPool

    pool = BufferPool(depth=2)
    b = pool.get(64 << 10)
    assert pool.idle() == 2  # not the whole arena: the pool keeps at most depth idle blocks
    b.release()
    assert pool.idle() == 2
    assert len(pool.get(64 << 10)) == 64 << 10


@pytest.mark.parametrize("offset, count", [(0, 0), (0, 100), (1, 4096), (3, 65536 + 17), (4096, 128 * 1024 - 4096),
                                           (0, 256 * 1024)])
def test_copy_in_exact(offset, count):
    """Small copies and streamed ones (>= 4 KiB, any destination alignment) land byte-exact,
    and nothing around them is touched."""
    src = random.Random(count).randbytes(count + 9)
    buf = DmaBuffer(256 * 1024 + 4096)
    buf[:] = b"\xee" * len(buf)
    buf.copy_in(offset, src, 9, count)
    assert bytes(buf[offset:offset + count]) == src[9:9 + count]
    assert bytes(buf[:offset]) == b"\xee" * offset
    assert bytes(buf[offset + count:]) == b"\xee" * (len(buf) - offset - count)


def test_copy_in_takes_any_contiguous_bytes_like():
    buf = DmaBuffer(8192)
    for src in (bytearray(b"ab" * 3000), memoryview(b"ab" * 3000), array.array("I", range(1500))):
        buf.copy_in(0, src, 0, 6000)
        assert bytes(buf[:6000]) == bytes(src)
    with pytest.raises(BufferError):
        buf.copy_in(0, memoryview(b"abcdef")[::2], 0, 3)


@pytest.mark.parametrize("args, words", [
    ((4000, b"x" * 8192, 0, 8192), "outside a DmaBuffer of 8192 bytes"),
    ((-1, b"x", 0, 1), "outside a DmaBuffer"),
    ((0, b"x" * 10, 5, 6), "source range [5, 11) is outside a source of 10 bytes"),
    ((0, b"x" * 10, 0, -1), "outside a DmaBuffer"),
])
def test_copy_in_out_of_bounds_is_refused(args, words):
    buf = DmaBuffer(8192)
    with pytest.raises(ValueError) as ei:
        buf.copy_in(*args)
    assert words in str(ei.value)


def test_copy_in_released_buffer():
    buf = DmaBuffer(4096)
    buf.release()
    with pytest.raises(ValueError, match="released"):
        buf.copy_in(0, b"x", 0, 1)


def test_fill_random_is_a_function_of_the_seed():
    b = ioengine.allocate_aligned_buffer(8192)
    ioengine.fill_random(b, 42)
    first = bytes(b)
    ioengine.fill_random(b, 42)
    assert bytes(b) == first
    ioengine.fill_random(b, 43)
    assert bytes(b) != first
    # seeds are taken modulo 2**64 (fio's are 64-bit): negative and large ints are fine
    ioengine.fill_random(b, 42 + (1 << 64))
    assert bytes(b) == first
    ioengine.fill_random(b, -1)
    assert bytes(b) != first
    # random: no byte value stands out and zlib cannot shrink it
    assert len(zlib.compress(first)) >= len(first)
    assert max(first.count(bytes([v])) for v in range(256)) < 3 * len(first) / 256
    b.release()


@pytest.mark.parametrize("n", [0, 1, 7, 9, 4095, 4096])
def test_fill_random_any_length_and_buffer_kind(n):
    b = ioengine.allocate_aligned_buffer(4096)
    ioengine.fill_random(b[:n], 5)  # a zero-copy slice: only its bytes change
    assert bytes(b)[n:] == bytes(4096 - n)
    whole = ioengine.allocate_aligned_buffer(n)
    ioengine.fill_random(whole, 5)
    assert bytes(b)[:n] == bytes(whole)  # a prefix of the same stream
    ba = bytearray(n)
    ioengine.fill_random(ba, 5)
    assert bytes(ba) == bytes(whole)
    b.release()
    whole.release()


def test_fill_random_compressible_part():
    b = ioengine.allocate_aligned_buffer(4096)
    ioengine.fill_random(b, 9, chunk=512, zeros=128)
    data = bytes(b)
    for c in range(0, 4096, 512):
        assert data[c:c + 128] == bytes(128)
        assert data[c + 128:c + 512].count(0) < 20
    # 3/4 random: zlib keeps about that much
    assert 0.70 * 4096 < len(zlib.compress(data)) < 0.85 * 4096
    ioengine.fill_random(b, 9, chunk=1000, zeros=5000)  # zeros beyond the chunk: all zero
    assert bytes(b) == bytes(4096)
    b.release()


def test_fill_random_refuses_bad_input():
    with pytest.raises(TypeError, match="writable buffer"):
        ioengine.fill_random(b"abc", 1)
    with pytest.raises(TypeError, match="writable buffer"):
        ioengine.fill_random(object(), 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        ioengine.fill_random(bytearray(8), 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int"):
        ioengine.fill_random(bytearray(8), True)
    with pytest.raises(ValueError, match="chunk and zeros must be >= 0"):
        ioengine.fill_random(bytearray(8), 1, chunk=-1)
    with pytest.raises(TypeError, match="contiguous"):
        ioengine.fill_random(memoryview(bytearray(16))[::2], 1)
    b = ioengine.allocate_aligned_buffer(4096)
    b.release()
    with pytest.raises(ValueError, match="released"):
        ioengine.fill_random(b, 1)
