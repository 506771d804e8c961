"""Per-request I/O priority (ioprio(7)) on every backend: the value reaches the kernel with the
request (io_uring's sqe->ioprio, linux-aio's aio_reqprio, the thread pool's ioprio_set), the
data is unchanged, bad values are refused before anything is queued."""
from __future__ import annotations

import errno
import os

import pytest

import ioengine
from ioengine import FileOpenOptions, IoPrioClass, ioprio_value
from ioengine import OpenFlags as F
from ioengine.backends.base import OP_READ

from foundation_util import read_file


def test_ioprio_value_packs_as_the_kernel_does():
    assert ioprio_value(IoPrioClass.RT, 0) == 1 << 13
    assert ioprio_value(IoPrioClass.BE, 7) == (2 << 13) | 7
    assert ioprio_value(IoPrioClass.IDLE) == 3 << 13
    assert ioprio_value(2, 0, hint=1) == (2 << 13) | (1 << 3)
    with pytest.raises(ValueError, match="level 8 is outside"):
        ioprio_value(IoPrioClass.BE, 8)
    with pytest.raises(ValueError, match="class 4 is outside"):
        ioprio_value(4, 0)
    with pytest.raises(TypeError, match="level must be an int"):
        ioprio_value(IoPrioClass.BE, "1")  # type: ignore[arg-type]


@pytest.mark.parametrize("buffered", [False, True], ids=["direct", "buffered"])
def test_reads_and_writes_with_a_priority(run, scratch, buffered):
    path = scratch / "p"
    prios = [0, ioprio_value(IoPrioClass.RT, 0), ioprio_value(IoPrioClass.BE, 7), ioprio_value(IoPrioClass.IDLE)]

    async def main():
        expected = bytearray()
        async with await ioengine.open_file_dma(path, F.RW | F.CREATE, FileOpenOptions(buffered=buffered)) as f:
            a = f.disk_write_dma_alignment
            for i, prio in enumerate(prios * 2):
                buf = f.allocate_buffer(a)
                buf[:] = bytes([i + 1]) * a
                assert await f.dma_write(i * a, buf, ioprio=prio) == a
                expected += bytes([i + 1]) * a
            for i, prio in enumerate(prios * 2):
                out = f.allocate_buffer(a)
                assert await f.dma_read(i * a, out, ioprio=prio) == a
                assert bytes(out) == expected[i * a:(i + 1) * a]
            outs = [f.allocate_buffer(a), f.allocate_buffer(a)]
            assert await f.dma_readv(0, outs, ioprio=prios[2]) == 2 * a
            assert b"".join(bytes(o) for o in outs) == expected[:2 * a]
            assert await f.dma_writev(0, outs[::-1], ioprio=prios[3]) == 2 * a
            expected[:2 * a] = expected[a:2 * a] + expected[:a]
        return bytes(expected)

    expected = run(main())
    assert read_file(path) == expected


def test_the_priority_reaches_the_kernel(run, scratch):
    """A class the kernel does not know (7), sent below File's check: every backend's kernel
    call fails it with EINVAL, so the value travels with the request; 0 and a real class pass."""
    path = scratch / "k"
    path.write_bytes(os.urandom(8192))

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            buf = f.allocate_buffer(4096)

            def read(prio):
                return r.submit_rw(OP_READ, f.fileno(), buf.address, 4096, 0, buf, "dma_read", f, None, None, None,
                                   None, 4096, prio)

            with pytest.raises(OSError) as e:
                await read(7 << 13)
            assert e.value.errno == errno.EINVAL and "dma_read" in str(e.value) and str(path) in str(e.value)
            assert await read(0) == 4096
            assert await read(ioprio_value(IoPrioClass.BE, 3)) == 4096

    run(main())


@pytest.mark.parametrize("backend", ["io_uring"])
@pytest.mark.parametrize("loop_kind", ["asyncio"])
def test_bad_priorities_are_refused_before_the_kernel(run, scratch):
    path = scratch / "bad"
    path.write_bytes(bytes(8192))

    async def main():
        async with await ioengine.open_file_dma(path, F.RW) as f:
            buf = f.allocate_buffer(4096)
            for call in (f.dma_read, f.dma_write):
                with pytest.raises(ValueError, match="not a priority of class NONE, RT, BE or IDLE"):
                    await call(0, buf, ioprio=4 << 13)
                with pytest.raises(ValueError, match="not a priority"):
                    await call(0, buf, ioprio=-1)
                with pytest.raises(TypeError, match="ioprio must be an int"):
                    await call(0, buf, ioprio=1.5)
            with pytest.raises(TypeError, match="ioprio must be an int"):
                await f.dma_readv(0, [buf], ioprio="rt")
            with pytest.raises(ValueError, match="not a priority"):
                await f.dma_writev(0, [buf], ioprio=1 << 16)

    run(main())
    assert read_file(path) == bytes(8192)
