"""Aligned DMA buffers and the per-reactor pool that recycles the common sizes."""
from __future__ import annotations

from ._dmabuf import DmaBuffer as _RawBuffer

#: Alignment used when nothing better is known: the page size covers every disk we have met.
DEFAULT_ALIGNMENT = 4096


class DmaBuffer(_RawBuffer):
    """Aligned memory for O_DIRECT I/O.

    Supports the buffer protocol (``memoryview(buf)``, ``bytes(buf)``, ``f.write(buf)``),
    ``len()``, ``buf[a:b]`` as a zero-copy memoryview, ``buf.trim(off, n)`` as a zero-copy
    DmaBuffer, and ``release()``. Memory is never freed while a view or an in-flight I/O still
    uses it: release() then only marks it, and the last user frees it (or returns it to its pool).
    """

    __slots__ = ("_pool",)

    def __init__(self, size: int = 0, alignment: int = DEFAULT_ALIGNMENT) -> None:
        self._pool: BufferPool | None = None

    def trim(self, offset: int, length: int, cls: type | None = None) -> DmaBuffer:
        view = super().trim(offset, length, cls)
        view._pool = None
        return view

    def release(self) -> None:
        pool = self._pool
        if pool is not None:
            self._pool = None
            block = self.parent
            super().release()
            # The block is reusable only if nobody (an in-flight I/O, a view) still holds it.
            if self.freed and block is not None and block.exports == 0:
                pool._put(block)
            return
        super().release()

    def __del__(self) -> None:
        # A pooled buffer dropped without release() (e.g. a stream chunk the consumer let go)
        # still goes back to its pool instead of being freed and reallocated.
        if getattr(self, "_pool", None) is not None:
            self.release()

    def __enter__(self) -> DmaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def allocate_aligned_buffer(size: int, alignment: int = DEFAULT_ALIGNMENT) -> DmaBuffer:
    """A new zero-filled buffer of ``size`` bytes whose address is a multiple of ``alignment``."""
    return DmaBuffer(size, alignment)


#: Blocks this large and up are carved from huge-page arenas (see BufferPool).
ARENA_BLOCK_MIN = 64 << 10
#: A transparent huge page: the arena size.
HUGE_PAGE = 2 << 20


class BufferPool:
    """Free lists of power-of-two blocks (page-aligned) from 4 KiB up to ``max_size``.

    Users get a fresh DmaBuffer view of a pooled block, so a stale reference kept after
    release() can never alias the next user's data: the released view refuses every access.
    A pooled buffer dropped without release() comes back too (when it is garbage collected).

    Blocks of ARENA_BLOCK_MIN and up are cut from 2 MiB arenas backed by a transparent huge
    page where the kernel grants one: physically contiguous, so an I/O goes to the device as a
    few segments rather than one per 4 KiB page. Measured on this project's virtio disk: 128 KiB
    sequential reads at depth 5 went from ~1.1 to ~2.2 GB/s (fio with its own buffers: ~1.1).
    An arena's memory is freed when the last block cut from it is gone.
    """

    __slots__ = ("_free", "_depth", "_max_size")

    def __init__(self, depth: int = 64, max_size: int = 1 << 20) -> None:
        self._free: dict[int, list[_RawBuffer]] = {}
        self._depth = depth
        self._max_size = max_size

    def get(self, size: int, alignment: int = DEFAULT_ALIGNMENT) -> DmaBuffer:
        block_size = max(DEFAULT_ALIGNMENT, 1 << (max(size, 1) - 1).bit_length())
        if alignment > DEFAULT_ALIGNMENT or block_size > self._max_size or self._depth == 0:
            return DmaBuffer(size, alignment)
        free = self._free.get(block_size)
        if free:
            block = free.pop()
        elif block_size >= ARENA_BLOCK_MIN:
            block = self._carve(block_size)
        else:
            block = _RawBuffer(block_size, DEFAULT_ALIGNMENT)
        view = block.trim(0, size, DmaBuffer)
        view._pool = self
        return view

    def _carve(self, block_size: int) -> _RawBuffer:
        """One block; the rest of a fresh arena goes to the free list (as far as depth allows)."""
        arena = _RawBuffer(max(HUGE_PAGE, block_size), HUGE_PAGE)
        blocks = [arena.trim(off, block_size) for off in range(0, len(arena), block_size)]
        free = self._free.setdefault(block_size, [])
        for b in blocks[1:1 + max(0, self._depth - len(free))]:
            free.append(b)
        return blocks[0]

    def _put(self, block: _RawBuffer) -> None:
        free = self._free.setdefault(len(block), [])
        if len(free) < self._depth:
            free.append(block)

    def idle(self) -> int:
        """Idle blocks held (for tests and metrics)."""
        return sum(len(v) for v in self._free.values())

    def clear(self) -> None:
        self._free.clear()
