"""File.dma_read_bulk(pos, n, into=buf): any position and length into the caller's buffer, nothing
allocated per call (issue 18, item 5)."""
from __future__ import annotations

import asyncio
import random

import pytest

import ioengine
import ioengine.file as file_mod
from ioengine import File


def _write(path, data: bytes) -> None:
    path.write_bytes(data)


def test_into_any_range_and_eof(run, scratch):
    size = 3 * 4096 + 1234
    data = random.Random(1).randbytes(size)
    path = scratch / "f"
    _write(path, data)
    cases = [(0, 1), (1, 10), (4095, 2), (4096, 4096), (0, 8192), (100, 9000), (size - 10, 10),
             (size - 10, 100), (size, 5), (size + 5000, 5), (7, 0), (0, size), (0, size + 4096)]
    rng = random.Random(2)
    for _ in range(30):
        p = rng.randrange(size + 100)
        cases.append((p, rng.randint(1, 20000)))

    async def body():
        async with await ioengine.open_file_dma(path) as f:
            dma = f.allocate_buffer(64 * 1024)
            plain = bytearray(64 * 1024)
            for pos, n in cases:
                want = data[pos:pos + n]
                for into in (dma, plain, memoryview(plain)):
                    got = await f.dma_read_bulk(pos, n, into=into)
                    assert got == len(want), (pos, n, type(into))
                    assert bytes(memoryview(into)[:got]) == want, (pos, n, type(into))
            dma.release()

    run(body())


def test_into_reuses_buffers(run, scratch, monkeypatch):
    """Neither the reactor's pool nor a new bounce buffer is used per call: a sequential reader
    makes one bounce buffer in all, and aligned reads into a DmaBuffer go straight into it."""
    data = random.Random(3).randbytes(1 << 20)
    path = scratch / "f"
    _write(path, data)
    made = []
    real_new = file_mod._new_bounce
    monkeypatch.setattr(file_mod, "_new_bounce", lambda *a: made.append(a) or real_new(*a))

    async def body():
        async with await ioengine.open_file_dma(path) as f:
            into = f.allocate_buffer(8192)
            allocs = []
            real_alloc = File.allocate_buffer
            monkeypatch.setattr(File, "allocate_buffer", lambda self, n: allocs.append(n) or real_alloc(self, n))
            rng = random.Random(4)
            assert await f.dma_read_bulk(4095, 4000, into=into) == 4000  # the largest span: 8 KiB
            for _ in range(1000):
                pos = rng.randrange(len(data) - 4000)
                n = rng.randint(1, 4000)
                assert await f.dma_read_bulk(pos, n, into=into) == n
                assert bytes(into[:n]) == data[pos:pos + n]
            assert len(made) == 1, "one bounce buffer for a sequential reader"
            for k in range(50):  # aligned: straight into the caller's buffer, no bounce at all
                assert await f.dma_read_bulk(k * 4096, 4096, into=into) == 4096
                assert bytes(into[:4096]) == data[k * 4096:(k + 1) * 4096]
            assert len(made) == 1
            # 32 concurrent readers: at most 32 bounce buffers, reused afterwards
            bufs = [bytearray(5000) for _ in range(32)]

            async def reader(b):
                for _ in range(20):
                    pos = rng.randrange(len(data) - 5000)
                    assert await f.dma_read_bulk(pos, 5000, into=b) == 5000
                    assert bytes(b) == data[pos:pos + 5000]

            await asyncio.gather(*(reader(b) for b in bufs))
            assert len(made) <= 33
            before = len(made)
            await asyncio.gather(*(reader(b) for b in bufs))
            assert len(made) == before
            assert allocs == [], "dma_read_bulk(into=) took buffers from the pool"
            into.release()

    run(body())


def test_into_checks(run_default_backend, scratch):
    path = scratch / "f"
    _write(path, b"x" * 100)

    async def body():
        async with await ioengine.open_file_dma(path) as f:
            with pytest.raises(ValueError, match="fewer than"):
                await f.dma_read_bulk(0, 10, into=bytearray(5))
            with pytest.raises(TypeError, match="writable"):
                await f.dma_read_bulk(0, 10, into=b"0123456789")
            with pytest.raises(TypeError):
                await f.dma_read_bulk(0, 10, into=object())
            assert await f.dma_read_bulk(0, 0, into=bytearray()) == 0

    run_default_backend(body())


@pytest.fixture
def run_default_backend():
    return lambda coro: ioengine.run(coro)
