"""Many tasks writing to one output stream: calls are serialized in call order, each call's bytes
contiguous, nothing lost (issue 18, item 2)."""
from __future__ import annotations

import asyncio

import pytest

import ioengine
from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream

from streams_util import CREATE, read_os


def _record(i: int, size: int) -> bytes:
    """``size`` bytes that name their call: a header with the index, then a filler byte."""
    head = i.to_bytes(4, "little")
    return head + bytes([i % 251 + 1]) * (size - 4)


def _check(data: bytes, count: int, size: int) -> None:
    assert len(data) == count * size
    seen = []
    for k in range(count):
        chunk = data[k * size:(k + 1) * size]
        i = int.from_bytes(chunk[:4], "little")
        assert chunk == _record(i, size), f"record {k} (call {i}) is not contiguous"
        seen.append(i)
    # Serialized in call order: the tasks called write() in index order.
    assert seen == list(range(count))


@pytest.mark.parametrize("count,size", [(100, 4096), (1000, 100), (64, 300 * 1024 + 7)])
def test_concurrent_writes_are_contiguous_and_in_call_order(run, scratch, count, size):
    path = scratch / "f"

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=16384, write_behind=2))

        async def one(i: int) -> None:
            await out.write(_record(i, size))

        await asyncio.gather(*(one(i) for i in range(count)))
        assert out.position == count * size
        await out.close()

    run(body())
    _check(read_os(path), count, size)


def test_concurrent_writes_and_flushes(run, scratch):
    """Flushes interleaved with writes from other tasks: a flush covers every write called before it."""
    path = scratch / "f"
    size, count = 5000, 200

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=8192, write_behind=2))

        async def one(i: int) -> None:
            await out.write(_record(i, size))
            if i % 10 == 9:
                await out.flush()
                assert out.durable_position >= (i + 1) * size

        await asyncio.gather(*(one(i) for i in range(count)))
        await out.close()

    run(body())
    _check(read_os(path), count, size)


def test_writer_cancelled_while_queued_writes_nothing(run_default, scratch):
    path = scratch / "f"
    size = 64 * 1024

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=16384, write_behind=1))
        tasks = [asyncio.ensure_future(out.write(_record(i, size))) for i in range(6)]
        await asyncio.sleep(0)  # the first holds the turn, the others queue
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[3], asyncio.CancelledError)
        assert [r for k, r in enumerate(results) if k != 3] == [None] * 5
        await out.close()
        return [k for k in range(6) if k != 3]

    order = run_default(body())
    data = read_os(path)
    assert len(data) == 5 * size
    for k, i in enumerate(order):
        assert data[k * size:(k + 1) * size] == _record(i, size)
