"""A stream that keeps finding its I/O already complete must still let other tasks run.

Submitting also collects completions; if those resolved futures under the submitting task, a
stream whose next buffer is always ready would never suspend and would hold the loop for as
long as the disk keeps up."""
from __future__ import annotations

import asyncio

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE

MiB = 1 << 20
BUF = 128 * 1024


class Ticker:
    """Counts loop turns; ``longest`` is the most stream calls in a row with no turn between."""

    def __init__(self) -> None:
        self.ticks = 0
        self.stop = False
        self._seen = 0
        self._run = 0
        self.longest = 0

    async def tick(self) -> None:
        while not self.stop:
            self.ticks += 1
            await asyncio.sleep(0)

    def after_call(self) -> None:
        if self.ticks == self._seen:
            self._run += 1
            self.longest = max(self.longest, self._run)
        else:
            self._seen, self._run = self.ticks, 0


async def _measure(work) -> int:
    t = Ticker()
    task = asyncio.ensure_future(t.tick())
    await asyncio.sleep(0)
    await work(t)
    t.stop = True
    await task
    return t.longest


def test_output_stream_yields_to_other_tasks(run, scratch):
    path = scratch / "w"

    async def work(t: Ticker):
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=BUF, preallocation_size=0))
        data = bytes(BUF)
        for _ in range(32 * MiB // BUF):
            await out.write(data)
            t.after_call()
        await out.close()

    longest = run(_measure(work))
    # Once write_behind buffers are in the kernel and write_behind more wait for a slot, the
    # writer waits for a completion, which the loop delivers: the other task runs at least
    # every 2 * write_behind + 1 buffers.
    wb = FileOutputStreamOptions().write_behind
    assert longest <= 2 * wb + 1, f"{longest} buffers written without a loop turn"


def test_input_stream_yields_to_other_tasks(run, scratch):
    path = scratch / "r"
    path.write_bytes(bytes(32 * MiB))

    async def work(t: Ticker):
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=BUF)) as s:
            async for _ in s:
                t.after_call()
        await f.close()

    longest = run(_measure(work))
    # read_ahead buffers in flight and one being consumed; as many again may have completed by
    # the time the stream resubmits (a fast disk, the threads backend): a stream that never
    # yielded would read all 256 without a turn.
    ra = FileInputStreamOptions().read_ahead
    assert longest <= 2 * ra + 1, f"{longest} buffers read without a loop turn"
