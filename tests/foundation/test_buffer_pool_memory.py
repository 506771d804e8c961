"""The buffer pool gives idle memory back (issue 15, item 8) and says what a bad size is (item 9).

2,048 x 64 KiB buffers from a reactor's pool, released in random order, used to leave RSS +82 MiB
while the pool kept 64 idle blocks (4 MiB): each block kept idle pinned its whole 2 MiB arena.
Blocks the pool lets go now give their pages back (madvise MADV_DONTNEED). RSS is compared before
and after in the same process (no absolute figures); the buffers still work for O_DIRECT I/O
afterwards, on every backend.
"""
from __future__ import annotations

import gc
import os
import random

import pytest

import ioengine
from ioengine.buffers import ARENA_BLOCK_MIN, HUGE_PAGE, BufferPool

MIB = 1 << 20
CREATE = ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE | ioengine.OpenFlags.TRUNCATE


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _churn(get, count: int, size: int, seed: int) -> tuple[int, int]:
    """Allocate ``count`` buffers, touch every page, release them in random order.
    Returns (RSS growth while held, RSS growth after release)."""
    gc.collect()
    before = rss()
    bufs = [get(size) for _ in range(count)]
    for b in bufs:
        b[:] = b"\xa5" * size  # every page resident
    held = rss() - before
    random.Random(seed).shuffle(bufs)
    for b in bufs:
        b.release()
    del bufs
    gc.collect()
    return held, rss() - before


def test_released_buffers_return_memory(run, scratch):
    path = scratch / "f"
    size = 64 << 10

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        pool = ioengine.get_reactor().buffers
        held, after = _churn(f.allocate_buffer, 2048, size, seed=15)
        # The buffers still work: write distinct blocks through pooled buffers, read them back.
        blocks = [bytes([i]) * size for i in range(1, 9)]
        for i, data in enumerate(blocks):
            b = f.allocate_buffer(size)
            b[:] = data
            assert await f.dma_write(i * size, b) == size
            b.release()
        for i, data in enumerate(blocks):
            b = f.allocate_buffer(size)
            assert await f.dma_read(i * size, b) == size
            assert bytes(b) == data
            b.release()
        idle = pool.idle()
        await f.close()
        return held, after, idle

    held, after, idle = run(body())
    assert held >= 64 * MIB, f"the buffers were not resident while held (+{held / MIB:.1f} MiB)"
    # The pool may keep its idle blocks (64 x 64 KiB = 4 MiB) and the allocator some slack; in a
    # full run on a loaded host the process's other allocations add to it (CI saw +19.4 MiB of the
    # 128 MiB held), so the bound is a fifth of what was held.
    assert after <= 24 * MIB, f"RSS still +{after / MIB:.1f} MiB after releasing every buffer ({idle} idle blocks)"


@pytest.mark.parametrize("size", [ARENA_BLOCK_MIN, 128 << 10, 1 << 20])
def test_pool_returns_memory_for_every_arena_size(size):
    pool = BufferPool(depth=8)
    count = (128 * MIB) // size
    held, after = _churn(pool.get, count, size, seed=size)
    assert held >= 100 * MIB
    # Each of the 8 idle blocks may keep its arena's transparent huge page whole until the
    # kernel's deferred split gets to it (CI saw +10 MiB for 8 idle 64 KiB blocks): at most a
    # huge page each. The bug this guards against left +82 MiB.
    kept = 8 * max(size, HUGE_PAGE)
    assert after <= kept + 8 * MIB, f"RSS still +{after / MIB:.1f} MiB ({pool.idle()} idle blocks)"
    assert pool.idle() <= 8
    assert pool.given_back > 0
    b = pool.get(size)  # still usable: a kept block, or a fresh arena
    b[:] = b"\x01" * size
    assert bytes(b[-4:]) == b"\x01" * 4
    b.release()


def test_clear_gives_back_idle_blocks():
    pool = BufferPool(depth=64)
    held, _ = _churn(pool.get, 32, 64 << 10, seed=1)
    assert pool.idle() == 32  # one arena's worth
    gc.collect()
    before = rss()
    pool.clear()
    gc.collect()
    assert pool.idle() == 0
    assert rss() <= before  # never more; the freed arenas go back with their pages


def test_kept_idle_blocks_keep_their_data():
    """A block within the pool's cap is reused as it is (the pool does not zero it), and one given
    back reads as zeros: neither ever shows another process's bytes."""
    pool = BufferPool(depth=1)
    a, b = pool.get(64 << 10), pool.get(64 << 10)
    a[:4] = b"AAAA"
    b[:4] = b"BBBB"
    a.release()  # kept (cap 1)
    b.release()  # beyond the cap: pages given back
    c = pool.get(64 << 10)
    assert bytes(c[:4]) == b"AAAA"
    c.release()


@pytest.mark.parametrize("size, exc, words", [
    (-1, ValueError, ["size", ">= 0", "-1"]),
    (-4096, ValueError, ["size", ">= 0"]),
    (1.5, TypeError, ["size", "int", "float"]),
    ("4096", TypeError, ["size", "int", "str"]),
    (None, TypeError, ["size", "int", "NoneType"]),
    (True, TypeError, ["size", "bool"]),
    (1 << 64, ValueError, ["size", "larger"]),
])
def test_allocate_buffer_bad_size_says_what_was_expected(run, scratch, size, exc, words):
    path = scratch / "f"
    path.write_bytes(b"")

    async def body():
        f = await ioengine.open_file_dma(path)
        try:
            with pytest.raises(exc) as ei:
                f.allocate_buffer(size)
            return str(ei.value)
        finally:
            await f.close()

    msg = run(body())
    assert "allocate_buffer" in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("size, exc", [(-1, ValueError), (2.0, TypeError), (1 << 64, ValueError)])
def test_allocate_aligned_buffer_bad_size(size, exc):
    with pytest.raises(exc, match="size"):
        ioengine.allocate_aligned_buffer(size)
