"""Input stream: skip across buffers, random op sequences against a model, close with reads in flight."""
from __future__ import annotations

import asyncio
import random

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE, payload, read_os, write_os

B = 4096  # buffer size of the skip tests
RA = 2  # their read-ahead
WINDOW = (RA + 1) * B  # what is in flight at once


class Model:
    """What the stream must return: data[pos:end]."""

    def __init__(self, data: bytes, offset: int, length: int | None) -> None:
        self.data = data
        self.end = len(data) if length is None else min(len(data), offset + length)
        self.pos = offset

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.end][:n]
        self.pos += len(out)
        return out

    def skip(self, n: int) -> None:
        self.pos = max(self.pos, min(self.pos + n, self.end))


async def apply(stream, model: Model, op: str, n: int, where: str) -> None:
    if op == "skip":
        await stream.skip(n)
        model.skip(n)
    elif op == "exactly":
        want = model.take(n)
        if len(want) < n:
            with pytest.raises(asyncio.IncompleteReadError) as e:
                await stream.read_exactly(n)
            got = e.value.partial
        else:
            got = bytes(await stream.read_exactly(n))
        assert got == want, f"{where}: read_exactly({n})"
    elif op == "upto":
        got = bytes(await stream.read_up_to(n))
        want = model.data[model.pos:model.end][:n]
        assert 0 < len(got) or not want, f"{where}: read_up_to({n}) empty before the end"
        assert got == want[:len(got)], f"{where}: read_up_to({n})"
        model.pos += len(got)
    elif op == "read":
        got = bytes(await stream.read())
        want = model.data[model.pos:model.end]
        assert 0 < len(got) or not want, f"{where}: read() empty before the end"
        assert got == want[:len(got)], f"{where}: read()"
        model.pos += len(got)
    else:
        raise AssertionError(op)


SKIPS = [1, 100, B - 1, B, B + 1, 2 * B, WINDOW - 1, WINDOW, WINDOW + 1, 3 * WINDOW + 5, 50_000]


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed", "dynamic"])
def test_skip_across_buffers(run, scratch, dynamic):
    """Skips smaller than, equal to and larger than one buffer, and past the read-ahead window,
    each followed by a read that checks where the stream landed."""
    data = payload(3, 400_000)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        for lead in (0, 10, B - 1):  # bytes consumed before each skip (mid-buffer or at a boundary)
            f = await ioengine.open_file_dma(path)
            stream = make_file_input_stream(f, options=FileInputStreamOptions(
                buffer_size=B, read_ahead=RA, dynamic_adjustments=dynamic))
            model = Model(data, 0, None)
            for n in SKIPS:
                await apply(stream, model, "exactly", lead, f"lead {lead}")
                await apply(stream, model, "skip", n, f"lead {lead}")
                await apply(stream, model, "exactly", 33, f"after skip({n}), lead {lead}")
            await apply(stream, model, "skip", len(data), "skip past the end")
            assert len(await stream.read()) == 0
            await stream.close()
            await f.close()
        await ioengine.get_reactor().drain()
        assert ioengine.get_reactor().inflight == 0

    run(body())


def test_skip_before_first_read_and_within_leftover(run, scratch):
    data = payload(4, 100_000)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, 1000, 50_000, FileInputStreamOptions(buffer_size=B, read_ahead=RA))
        model = Model(data, 1000, 50_000)
        await apply(stream, model, "skip", 5000, "skip before any read")
        await apply(stream, model, "upto", 10, "")  # leaves a leftover in the current buffer
        await apply(stream, model, "skip", 20, "skip inside the leftover")
        await apply(stream, model, "upto", 10, "")
        await apply(stream, model, "skip", B * 3, "skip out of the leftover, past the window")
        await apply(stream, model, "read", 0, "")
        await apply(stream, model, "skip", 100_000, "skip past the length")
        assert len(await stream.read()) == 0
        with pytest.raises(asyncio.IncompleteReadError) as e:
            await stream.read_exactly(10)
        assert e.value.partial == b"" and e.value.expected == 10
        await stream.close()
        await f.close()

    run(body())


@pytest.mark.parametrize("seed", range(6))
def test_random_ops_against_model(run, scratch, seed):
    rng = random.Random(seed)
    size = rng.choice([0, 777, 4097, 65_536, 200_003, 1_000_000])
    data = payload(seed, size)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        for _ in range(4):
            offset = rng.choice([0, 1, 511, 512, 4096, rng.randint(0, size + 10)])
            length = rng.choice([None, 0, 1, rng.randint(0, size + 10)])
            buffer_size = rng.choice([512, 4096, 5000, 65_536])
            opts = FileInputStreamOptions(buffer_size=buffer_size, read_ahead=rng.choice([0, 1, 2, 4]),
                                          dynamic_adjustments=rng.random() < 0.5)
            f = await ioengine.open_file_dma(path)
            stream = make_file_input_stream(f, offset, length, opts)
            model = Model(data, offset, length)
            trace = []
            for _ in range(60):
                op = rng.choice(["skip", "exactly", "upto", "read"])
                n = rng.choice([1, rng.randint(1, 2 * buffer_size), rng.choice(SKIPS), rng.randint(1, 30_000)])
                trace.append((op, n))
                await apply(stream, model, op, n, f"offset {offset} length {length} {opts}: {trace}")
            rest = bytearray()
            async for chunk in stream:
                rest += chunk
            assert bytes(rest) == model.take(len(data)), f"rest after {trace}"
            await stream.close()
            await f.close()

    run(body())


def test_file_size_not_block_multiple(run, scratch):
    """Reads stop exactly at the end of a file whose size is not a block multiple."""
    path = scratch / "f"
    for size in (1, 513, 4095, 131_073, 300_001):
        data = payload(size, size)
        write_os(path, data)

        async def body():
            f = await ioengine.open_file_dma(path)
            stream = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=65_536, read_ahead=3))
            out = bytearray()
            async for chunk in stream:
                out += chunk
            assert bytes(out) == data
            assert len(await stream.read()) == 0
            assert len(await stream.read_up_to(5)) == 0
            await stream.close()
            await f.close()

        run(body())


def test_close_with_read_ahead_in_flight(run, scratch):
    """close() with read_ahead 8 in flight: nothing crashes, the reactor drains to 0, buffers are
    not handed to anyone else while the kernel may still write into them, and reads raise."""
    data = payload(6, 4 << 20)
    other = payload(7, 2 << 20)
    path = scratch / "f"
    path2 = scratch / "g"
    write_os(path, data)

    async def body():
        r = ioengine.get_reactor()
        for i in range(3):
            f = await ioengine.open_file_dma(path)
            stream = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=131_072, read_ahead=8))
            first = await stream.read()
            assert bytes(first) == data[:len(first)]
            # read() refilled the slot it freed before returning: that read cannot have completed
            assert r.inflight >= 1
            await stream.close()
            await stream.close()  # twice is fine
            # Reuse same-size DMA buffers at once: if a cancelled read's buffer went back to the
            # pool before its completion, the kernel could scribble over this data.
            g = await ioengine.open_file_dma(path2, CREATE)
            out = make_file_output_stream(g, FileOutputStreamOptions(buffer_size=131_072, preallocation_size=0))
            for k in range(0, len(other), 100_000):
                await out.write(other[k:k + 100_000])
            await out.close()
            assert read_os(path2) == other, f"round {i}: data written right after close() is corrupt"
            for call in (stream.read(), stream.read_exactly(10), stream.read_up_to(10), stream.readline(),
                         stream.readinto(bytearray(10))):
                with pytest.raises(ioengine.ClosedFileError):
                    await call
            with pytest.raises(ioengine.ClosedFileError):
                async for _ in stream:
                    pass
            await r.drain()
            assert r.inflight == 0
            await f.close()
        # the bytes handed out before close() stay valid
        assert bytes(first) == data[:len(first)]

    run(body())


def test_close_before_any_read(run, scratch):
    path = scratch / "f"
    write_os(path, payload(8, 10_000))

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f) as stream:
            pass
        with pytest.raises(ioengine.ClosedFileError):
            await stream.read()
        await ioengine.get_reactor().drain()
        assert ioengine.get_reactor().inflight == 0
        await f.close()

    run(body())


def test_skip_after_close_raises(run_default, scratch):
    path = scratch / "f"
    write_os(path, payload(9, 100_000))

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f)
        await stream.read_exactly(10)
        await stream.close()
        try:
            with pytest.raises(ioengine.ClosedFileError):
                await stream.skip(5000)
        finally:
            await f.close()

    run_default(body())


def test_close_while_another_task_reads(run, scratch):
    path = scratch / "f"
    write_os(path, payload(10, 1 << 20))

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=131_072, read_ahead=2))
        reader = asyncio.get_running_loop().create_task(stream.read())
        # One loop turn: the reader has issued its reads and waits; they are staged, not yet
        # submitted (fewer than submit_batch), so none can have completed.
        await asyncio.sleep(0)
        await stream.close()
        res = (await asyncio.gather(reader, return_exceptions=True))[0]
        await ioengine.get_reactor().drain()
        await f.close()
        assert not reader.cancelled(), "the reader task was never cancelled, yet it ends as cancelled"
        assert isinstance(res, ioengine.ClosedFileError) or (isinstance(res, memoryview) and len(res) == 0), res

    run(body())


def test_cancelled_read_loses_no_data(run, scratch):
    """A read cancelled before it delivered anything (asyncio.wait_for timeout, task group shutdown)
    must not move the stream: the next reads still return every byte in order."""
    data = payload(11, 1 << 20)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=131_072, read_ahead=2))
        reader = asyncio.get_running_loop().create_task(stream.read())
        await asyncio.sleep(0)  # the reader now waits on its (staged, not yet submitted) read
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        got = bytes(await stream.read_exactly(len(data)))
        await stream.close()
        await f.close()
        lost = len(data) - len(got)
        assert lost == 0, f"{lost} bytes lost after a cancelled read()"
        assert got == data, "content differs after a cancelled read()"

    run(body())


def test_many_cancelled_reads_lose_no_data(run, scratch):
    """Cancel the reader at random moments (waiting on the disk, or woken but not yet resumed):
    every cancelled wait re-issues or keeps its read, and the stream still yields every byte."""
    data = payload(12, 3 << 20)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        rnd = random.Random(5)
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=65536, read_ahead=3))
        got = bytearray()
        cancelled = 0
        while True:
            reader = asyncio.get_running_loop().create_task(stream.read())
            for _ in range(rnd.randrange(3)):
                await asyncio.sleep(0)
            if rnd.random() < 0.5 and reader.cancel():
                try:
                    chunk = await reader
                except asyncio.CancelledError:
                    cancelled += 1
                    continue
            else:
                chunk = await reader
            if not chunk:
                break
            got += chunk
        await stream.close()
        await f.close()
        assert cancelled > 5
        assert len(got) == len(data) and bytes(got) == data

    run(body())
