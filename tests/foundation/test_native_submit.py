"""The submission in C (IoPath.set_ring / flush_ring): with io_uring, a full batch goes to the
kernel from the per-request path without Python, and the reactor's per-turn submission takes
the same C call. Real I/O on every backend and loop (the others keep the backend's flush()),
batches of every size, a fault injector put in and taken out (its records must pass through
it), a refused enter (every staged request fails with an OSError, the reactor goes on), and
shutdown (the ring is let go of before it closes)."""
from __future__ import annotations

import asyncio
import errno

import pytest

import ioengine
from ioengine import OpenFlags as F
from ioengine._native import ffi
from ioengine.backends.base import OP_READ
from ioengine.backends.faults import FaultInjector
from ioengine.testing import FaultRule, inject_faults, remove_faults

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 128


def _order(n: int) -> list[int]:
    return [(i * 53 + 7) % BLOCKS for i in range(n)]


def test_only_io_uring_submits_in_c(run, backend):
    async def main():
        r = ioengine.get_reactor()
        # nothing staged: the C submission returns what it reaped (nothing), or None when the
        # backend has no ring for it (Python's flush() then)
        got = r._path.flush_ring()
        if backend == "io_uring":
            assert got == ([], [])
            assert r.backend.native_submit() is not None
        else:
            assert got is None
            assert r.backend.native_submit() is None

    run(main())


@pytest.mark.parametrize("submit_batch", [1, 2, 8, 64])
def test_reads_through_every_batch_size(run, scratch, submit_batch):
    """Many tasks at once, each request submitted mid-turn whenever the batch fills: every block
    comes back with its own bytes, nothing stays in flight."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            async def reader(k: int) -> None:
                buf = f.allocate_buffer(BS)
                for b in _order(40)[k % 7:]:
                    assert await f.dma_read(b * BS, buf) == BS
                    assert bytes(buf) == pattern_block(b, BS), b

            await asyncio.gather(*(reader(k) for k in range(48)))
        assert r.inflight == 0 and r.staged == 0

    run(main(), submit_batch=submit_batch, ring_entries=32)


@pytest.mark.parametrize("submit_batch", [1, 4])
def test_writes_then_reads_back(run, scratch, submit_batch):
    path = scratch / "data"

    async def main():
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
            async def writer(b: int) -> None:
                buf = f.allocate_buffer(BS)
                buf[:] = pattern_block(b, BS)
                assert await f.dma_write(b * BS, buf) == BS

            await asyncio.gather(*(writer(b) for b in range(BLOCKS)))
            buf = f.allocate_buffer(BS)
            for b in range(BLOCKS):
                assert await f.dma_read(b * BS, buf) == BS
                assert bytes(buf) == pattern_block(b, BS), b

    run(main(), submit_batch=submit_batch)


def test_fault_injector_sees_every_record_and_c_takes_over_after(run, scratch, backend):
    """While an injector wraps the backend, every submission (mid-turn ones too) goes through its
    flush(): a submit-time fault on every read fires for each. Taken out, C submits again."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            inj = inject_faults(r, [FaultRule(OP_READ, errno=errno.EIO, when="submit")])
            assert isinstance(r.backend, FaultInjector)
            assert r._path.flush_ring() is None  # the injector's flush() decides

            async def reader(b: int) -> None:
                with pytest.raises(OSError) as ei:
                    await f.dma_read(b * BS, f.allocate_buffer(BS))
                assert ei.value.errno == errno.EIO

            await asyncio.gather(*(reader(b) for b in range(24)))
            assert len(inj.log) == 24
            remove_faults(r)
            for _ in range(100):
                if not isinstance(r.backend, FaultInjector):
                    break
                await asyncio.sleep(0.001)
            assert not isinstance(r.backend, FaultInjector)
            assert (r._path.flush_ring() is not None) == (backend == "io_uring")
            bufs = [f.allocate_buffer(BS) for _ in range(24)]
            got = await asyncio.gather(*(f.dma_read(b * BS, buf) for b, buf in zip(range(24), bufs)))
            assert got == [BS] * 24
            for b, buf in enumerate(bufs):
                assert bytes(buf) == pattern_block(b, BS)

    run(main(), submit_batch=1)


@pytest.mark.parametrize("backend", ["io_uring"], indirect=True)
def test_refused_enter_fails_the_staged_requests_and_the_reactor_goes_on(run, scratch):
    """A submission the kernel refuses as a whole (an io_uring_enter error; a real ring refuses
    only in a broken process, so a submit function that returns -EFAULT stands in for it here):
    every staged request fails with an OSError naming errno, operation and path, from
    the mid-turn path and the per-turn one alike; nothing reaches the kernel; the next requests
    go through the real ring."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    calls = []

    @ffi.callback("int(void *, const uint64_t *, int, int *, uint64_t *, int32_t *, int, int)")
    def refuse(ring, recs, n, accepted, ud, res, max_, efd):
        calls.append(n)
        accepted[0] = 0
        return -errno.EFAULT

    async def main():
        r = ioengine.get_reactor()
        ring, submit = r.backend.native_submit()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            r._path.set_ring(ring, int(ffi.cast("uintptr_t", refuse)), r.backend.eventfd, 64, r._deferred,
                             r._fail_staged, None)
            try:
                futs = [f.read_future(b * BS, f.allocate_buffer(BS)) for b in range(10)]  # batch of 4: mid-turn too
                for fut in futs:
                    with pytest.raises(OSError) as ei:
                        await fut
                    assert ei.value.errno == errno.EFAULT
                    assert "dma_read" in str(ei.value) and str(path) in str(ei.value)
                assert calls == [4, 4, 2]  # two mid-turn submissions (C), then the turn's flush
            finally:
                r._use_native_submit()
            assert r.inflight == 0 and r.staged == 0
            buf = f.allocate_buffer(BS)
            assert await f.dma_read(5 * BS, buf) == BS
            assert bytes(buf) == pattern_block(5, BS)

    run(main(), submit_batch=4)


def test_shutdown_lets_go_of_the_ring(run, scratch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    seen = {}

    async def main():
        r = ioengine.get_reactor()
        seen["reactor"] = r
        f = await ioengine.open_file_dma(path, F.RO)
        bufs = [f.allocate_buffer(BS) for _ in range(16)]
        await asyncio.gather(*(f.dma_read(b * BS, buf) for b, buf in enumerate(bufs)))
        await f.close()

    run(main(), submit_batch=2)
    r = seen["reactor"]
    assert r.closed
    assert r._path.flush_ring() is None  # set_ring(0) before the ring was destroyed


def test_reaps_in_c_only_with_the_ring(run, scratch, backend):
    """With io_uring the reactor's reaps are IoPath's C calls (set_reap), with nothing to reap
    an empty pair; the other backends, and a fault injector put in front of the ring, keep the
    backend's poll() and reap(). Reads reaped either way come back whole."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def reads(f) -> None:
        bufs = [f.allocate_buffer(BS) for _ in range(8)]
        for k in range(4):
            blocks = _order(8 * (k + 1))[8 * k:]
            done = await asyncio.gather(*(f.dma_read(b * BS, buf) for b, buf in zip(blocks, bufs)))
            assert done == [BS] * 8
            assert [bytes(buf) for buf in bufs] == [pattern_block(b, BS) for b in blocks]

    async def main():
        r = ioengine.get_reactor()
        native = r.backend.native_reap()
        assert (native is not None) == (backend == "io_uring")
        if native is not None:
            assert r._path.poll_ring() == ([], []) and r._path.reap_woken_ring() == ([], [])
            with pytest.raises(ValueError, match="both addresses or neither"):
                r._path.set_reap(native[0], 0)
        async with await ioengine.open_file_dma(path, F.RO) as f:
            await reads(f)
            inj = inject_faults()
            try:
                assert r.backend.native_reap() is None  # the injector sees every completion
                await reads(f)
            finally:
                remove_faults()
            assert (r.backend.native_reap() is not None) == (backend == "io_uring")
            await reads(f)
            assert inj.log == []
        assert r.inflight == 0

    run(main())

