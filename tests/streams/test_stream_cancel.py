"""Cancellation loses nothing (issue 15, items 4 and 5).

An output stream's write() is all or nothing: a write cancelled part-way is accepted whole (its
bytes are copied into the stream's buffers before CancelledError is delivered), so the file holds
complete writes in order. An input stream's read_exactly/readinto/readline consume nothing unless
they return: a cancelled one gives its bytes back and the next read starts where it started.
Every test runs on every backend, on real files opened with O_DIRECT.
"""
from __future__ import annotations

import asyncio

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE, payload, read_os, write_os

KIB = 1024


async def _cancel_after(task: asyncio.Task, turns: int) -> bool:
    """Let ``task`` run ``turns`` loop turns, then cancel it; True if it was still running."""
    for _ in range(turns):
        await asyncio.sleep(0)
    running = not task.done()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return running


@pytest.mark.parametrize("prealloc", [0, 1 << 20])
@pytest.mark.parametrize("turns", [1, 2, 3, 5])
def test_cancelled_write_is_all_or_nothing(run, scratch, turns, prealloc):
    """The issue's case: a 300,000-byte write with write_behind=1 and 64 KiB buffers, cancelled
    after a loop turn or a few: the file holds exactly the complete writes, in order."""
    path = scratch / "out"
    a, b, c = payload(1, 1000), payload(2, 300_000), payload(3, 5000)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        opts = FileOutputStreamOptions(buffer_size=64 * KIB, write_behind=1, preallocation_size=prealloc)
        stream = make_file_output_stream(f, opts)
        await stream.write(a)
        task = asyncio.ensure_future(stream.write(b))
        was_running = await _cancel_after(task, turns)
        await stream.write(c)
        await stream.flush()
        await stream.close()
        return was_running

    was_running = run(body())
    data = read_os(path)
    # Accepted whole (documented in FileOutputStream.write), whether or not the cancel caught it.
    assert len(data) == len(a) + len(b) + len(c), (len(data), was_running)
    assert data == a + b + c


def test_cancelled_writes_in_a_row(run, scratch):
    """Several cancelled writes between ordinary ones: every one lands whole, in order."""
    path = scratch / "out"
    pieces = [payload(10 + i, n) for i, n in enumerate([70_000, 300_000, 5, 200_001, 131_072, 9])]

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=64 * KIB, write_behind=1))
        for i, p in enumerate(pieces):
            if i % 2:
                await _cancel_after(asyncio.ensure_future(stream.write(p)), 1)
            else:
                await stream.write(p)
        await stream.close()

    run(body())
    assert read_os(path) == b"".join(pieces)


def _input_file(scratch, n=1 << 20):
    path = scratch / "in"
    data = payload(7, n)
    write_os(path, data)
    return path, data


async def _cancel_once_consumed(task: asyncio.Task, stream, past: int) -> None:
    """Cancel ``task`` once the stream has handed out more than ``past`` bytes (and the task still
    waits for more); fails the test if the task finished first."""
    # a guard against a hang, not a timing: on a loaded machine (the threads backend's reads
    # wait for a pool thread) 10,000 loop turns were not always enough for the first read
    give_up = asyncio.get_running_loop().time() + 60
    while not task.done() and stream._consumed_pos() <= past and asyncio.get_running_loop().time() < give_up:
        await asyncio.sleep(0)
    assert not task.done(), "the read finished before it could be cancelled"
    assert stream._consumed_pos() > past
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


SLOW = FileInputStreamOptions(buffer_size=64 * KIB, read_ahead=0)


def test_cancelled_read_exactly_consumes_nothing(run, scratch):
    """Cancelled after its first 64 KiB arrived, read_exactly gives them back: the next read
    starts where read_exactly started."""
    path, data = _input_file(scratch)

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f, 0, None, SLOW) as stream:
            head = await stream.read_exactly(100)
            task = asyncio.ensure_future(stream.read_exactly(600_000))
            await _cancel_once_consumed(task, stream, 65536)
            again = bytes(await stream.read_exactly(600_000))
            with pytest.raises(asyncio.IncompleteReadError) as e:  # asks for more than is left
                await stream.read_exactly(len(data))
            rest = e.value.partial
        await f.close()
        return bytes(head), again, rest

    head, again, rest = run(body())
    assert head == data[:100]
    assert again == data[100:600_100], "the cancelled read_exactly lost what it had consumed"
    assert rest == data[600_100:]


def test_cancelled_readinto_consumes_nothing(run, scratch):
    path, data = _input_file(scratch)

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f, 0, None, SLOW) as stream:
            await stream.skip(10)
            b = bytearray(500_000)
            task = asyncio.ensure_future(stream.readinto(b))
            await _cancel_once_consumed(task, stream, 65536)
            got = await stream.readinto(b)
            after = bytes(await stream.read_up_to(7))
        await f.close()
        return bytes(b[:got]), after

    got, after = run(body())
    assert got == data[10:500_010]
    assert after == data[500_010:500_017]


def test_cancelled_readline_consumes_nothing(run, scratch):
    """A line longer than a buffer: readline cancelled part-way gives back the part it had."""
    path = scratch / "lines"
    long_line = b"x" * 300_000 + b"\n"
    data = b"first\n" + long_line + b"last\n"
    write_os(path, data)

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f, 0, None, SLOW) as stream:
            first = await stream.readline()
            task = asyncio.ensure_future(stream.readline())
            await _cancel_once_consumed(task, stream, 65536)
            second = await stream.readline()
            third = await stream.readline()
            end = await stream.readline()
        await f.close()
        return first, second, third, end

    assert run(body()) == (b"first\n", long_line, b"last\n", b"")


def test_cancelled_read_up_to_and_skip_lose_nothing(run, scratch):
    """read_up_to waits for one buffer at most; cancelled while it waits, nothing was taken."""
    path, data = _input_file(scratch)

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f, 0, None, SLOW) as stream:
            await stream.skip(65536 - 3)
            assert bytes(await stream.read_up_to(3)) == data[65533:65536]
            task = asyncio.ensure_future(stream.read_up_to(1000))
            await asyncio.sleep(0)
            if not task.done():
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                got = bytes(await stream.read_up_to(1000))
            else:
                got = bytes(task.result())
        await f.close()
        return got

    assert run(body()) == data[65536:66536]


def test_pushed_back_bytes_go_with_close(run, scratch):
    """After close, the bytes a cancelled read gave back are not handed out."""
    path, _ = _input_file(scratch)

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, 0, None, SLOW)
        task = asyncio.ensure_future(stream.read_exactly(600_000))
        await _cancel_once_consumed(task, stream, 65536)
        await stream.close()
        with pytest.raises(ioengine.ClosedFileError):
            await stream.read()
        await f.close()

    run(body())
