"""The per-request path in C keeps the same books as iosched's Python reference.

``ioengine._iopath.grant_take`` is DirectGrant.take done by C (the reactor's IoPath.io uses the
same function per request); on one request sequence both must leave identical grants and
class counters. The rest checks IoPath's own bookkeeping on real I/O through every backend.
"""
from __future__ import annotations

import asyncio
import random

import pytest

import ioengine
from ioengine import OpenFlags
from ioengine._iopath import IoPath, grant_take
from iosched import READ, WRITE, DiskProperties, IoQueue, IoQueueConfig

DISK = DiskProperties(("/d",), read_iops=100_000, read_bandwidth=1_000_000_000,
                      write_iops=50_000, write_bandwidth=500_000_000)


def _books(q: IoQueue, g, cls) -> tuple:
    return (g.budget, g.n, g.last_length, g.last_direction, g.last_cost, list(cls.ops), list(cls.bytes),
            cls.consumption, cls.accumulated, q.in_disk)


@pytest.mark.parametrize("seed", range(5))
def test_c_and_python_grant_books_match(seed):
    rnd = random.Random(seed)
    seq = [(rnd.choice((READ, WRITE)), rnd.choice((512, 4096, 4096, 4096, 65536, 131072, 1 << 20)))
           for _ in range(400)]
    results = []
    for take in ("python", "c"):
        q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True))
        cls = q.get_class("default")
        books = []
        t = 0.0
        g = q.open_grant(cls, t)
        for i, (d, n) in enumerate(seq):
            ok = g.take(d, n) if take == "python" else grant_take(g, d, n)
            books.append((ok, _books(q, g, cls)))
            if not ok or i % 37 == 36:  # the grant runs out, or the loop turn ends: book it, open the next
                q.commit_grant(g)
                if g.n:
                    q.complete_grant(g, g.n, t + 0.0005)
                t += 0.001
                g = q.open_grant(cls, t)
                assert g is not None
        q.commit_grant(g)
        books.append((None, _books(q, g, cls)))
        results.append(books)
    assert results[0] == results[1]


@pytest.mark.parametrize("seed", range(3))
def test_the_open_grants_books_in_c_match_python(seed):
    """IoPath keeps the open grant's budget and request count as C numbers while io() takes
    requests under it, and writes them back when Python looks (the ``grant`` property): at each
    commit the books are those of DirectGrant.take on the same sequence."""
    rnd = random.Random(seed)
    seq = [(rnd.choice((READ, WRITE)), rnd.choice((512, 4096, 4096, 4096, 65536, 131072, 1 << 20)))
           for _ in range(400)]
    bufs = {n: bytearray(n) for _, n in seq}
    loop = asyncio.new_event_loop()
    try:
        results = []
        for how in ("python", "open"):
            path = IoPath(loop.create_future, lambda req, err: OSError(err, ""), lambda g, n: None, capacity=1 << 20)
            q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True))
            cls = q.get_class("default")
            books = []
            t = 0.0
            g = path.grant = q.open_grant(cls, t)
            for i, (d, n) in enumerate(seq):
                if how == "python":
                    ok = g.take(d, n)
                else:
                    # the open grant itself, not through the property: C keeps its books meanwhile
                    got = path.io(d, 3, bufs[n], 0, 0, 0, "dma_read", None, None, cls, g)
                    ok = got is not False and got is not None
                if not ok or i % 37 == 36:
                    g = path.grant  # C writes its books back before Python sees the grant
                    books.append((ok, _books(q, g, cls)))
                    path.grant = None
                    q.commit_grant(g)
                    if g.n:
                        q.complete_grant(g, g.n, t + 0.0005)
                    t += 0.001
                    g = path.grant = q.open_grant(cls, t)
                    assert g is not None
            g = path.grant
            q.commit_grant(g)
            books.append((None, _books(q, g, cls)))
            results.append(books)
        assert results[0] == results[1]
        assert len(results[0]) > 10
    finally:
        loop.close()


def test_io_path_books_balance_on_real_io(run, scratch):
    """Every request registered is completed once; the futures get the byte counts; the
    class counters count each request once, whichever path (C io() or the general one) took it."""
    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(scratch / "f", OpenFlags.RW | OpenFlags.CREATE) as f:
            bufs = [f.allocate_buffer(4096) for _ in range(300)]  # more than the ring holds
            writes = await asyncio.gather(*(f.dma_write(i * 4096, b) for i, b in enumerate(bufs)))
            reads = await asyncio.gather(*(f.dma_read(i * 4096, b) for i, b in enumerate(bufs)))
            plain = await asyncio.gather(*(f.dma_read(i * 4096, bytearray(4096)) for i in range(0, 4)),
                                         return_exceptions=True)
            assert r.inflight == 0 and r.staged == 0
            m = ioengine.metrics()
        return writes, reads, plain, m

    writes, reads, plain, m = run(main())
    assert writes == [4096] * 300 and reads == [4096] * 300
    # a bytearray is not aligned for O_DIRECT: a clear error, through the general path
    assert all(isinstance(p, (int, ValueError)) for p in plain)


def test_class_counters_kept_in_c_are_exact_with_classes_interleaved(run, scratch):
    """IoPath counts a class's requests in C and adds them to the class's ops/bytes at each
    submission: with two classes alternating request by request, reads and writes, the
    counters are exact; requests staged and not yet submitted show in ioengine.metrics()."""
    a, b = ioengine.IoClass("test-count-a", 200), ioengine.IoClass("test-count-b", 100)

    async def main():
        async with await ioengine.open_file_dma(scratch / "f", OpenFlags.RW | OpenFlags.CREATE) as f:
            small, large = f.allocate_buffer(4096), f.allocate_buffer(8192)
            await f.dma_write(0, large, a)
            await f.dma_write(8192, large, b)
            ios = []
            for i in range(200):
                cls, buf = (a, small) if i % 2 else (b, large)
                ios.append(f.dma_write(i % 2 * 8192, buf, cls) if i % 3 == 0 else f.dma_read(i % 2 * 8192, buf, cls))
            await asyncio.gather(*ios)
            # staged in this turn, not yet handed to the kernel (the batch is larger than them)
            staged = [f.read_future(0, small, a) for _ in range(3)]
            seen = ioengine.get_reactor().staged
            m = ioengine.metrics()[0]["disks"]
            await asyncio.gather(*staged)
        return seen, m

    seen, m = run(main(), submit_batch=64)
    want = {"test-count-a": [0, 0, 0, 0], "test-count-b": [0, 0, 0, 0]}  # read ops, bytes; write ops, bytes
    for i in range(200):
        name, n = ("test-count-a", 4096) if i % 2 else ("test-count-b", 8192)
        w = want[name]
        if i % 3 == 0:
            w[2] += 1
            w[3] += n
        else:
            w[0] += 1
            w[1] += n
    want["test-count-a"][2:] = [want["test-count-a"][2] + 1, want["test-count-a"][3] + 8192]
    want["test-count-b"][2:] = [want["test-count-b"][2] + 1, want["test-count-b"][3] + 8192]
    want["test-count-a"][0] += 3
    want["test-count-a"][1] += 3 * 4096
    assert seen == 3
    (disk,) = m.values()
    for name, (ro, rb, wo, wb) in want.items():
        c = disk["classes"][name]
        assert (c["read_ops"], c["read_bytes"], c["write_ops"], c["write_bytes"]) == (ro, rb, wo, wb), name
