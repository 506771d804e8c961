"""Group commit: flushes requested while an fdatasync is in progress share the next one (issue 18,
item 1)."""
from __future__ import annotations

import asyncio

import ioengine
from ioengine import File
from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream

from streams_util import CREATE, read_os


def test_flushes_during_a_sync_share_the_next(run, scratch, monkeypatch):
    path = scratch / "f"
    syncs = []
    gate: dict = {}
    real_flush = File.flush

    async def counted_flush(self):
        syncs.append(None)
        if len(syncs) == 1:
            await gate["open"].wait()  # the first sync lasts until every task has asked for one
        await real_flush(self)

    monkeypatch.setattr(File, "flush", counted_flush)

    async def body():
        gate["open"] = asyncio.Event()
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=16384))
        done = []

        async def one(i: int) -> None:
            await out.write(bytes([i]) * 1000)
            await out.flush()
            assert out.durable_position >= (i + 1) * 1000
            done.append(i)

        tasks = [asyncio.ensure_future(one(i)) for i in range(20)]
        while out.position < 20_000 or out._turn_busy:
            await asyncio.sleep(0.001)
        assert len(syncs) == 1 and not done
        gate["open"].set()
        await asyncio.gather(*tasks)
        assert len(syncs) == 2, f"20 flushes took {len(syncs)} fdatasyncs"
        assert out.durable_position == 20_000
        await out.close()
        assert len(syncs) == 2, "close() has nothing left to sync"

    run(body())
    assert read_os(path) == b"".join(bytes([i]) * 1000 for i in range(20))


def test_sequential_flushes_each_sync(run, scratch, monkeypatch):
    path = scratch / "f"
    syncs = []
    real_flush = File.flush

    async def counted_flush(self):
        syncs.append(None)
        await real_flush(self)

    monkeypatch.setattr(File, "flush", counted_flush)

    async def body():
        out = make_file_output_stream(await ioengine.open_file_dma(path, CREATE))
        for i in range(5):
            await out.write(b"z" * 100)
            await out.flush()
            assert out.durable_position == (i + 1) * 100
        await out.flush()  # nothing new: already durable
        await out.close()

    run(body())
    assert len(syncs) == 5
    assert read_os(path) == b"z" * 500
