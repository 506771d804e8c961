"""The file-like adapter: readinto, readline, lines(), and readline mixed with read_exactly."""
from __future__ import annotations

import asyncio
import random

import pytest

import ioengine
from ioengine.fstream import FileInputStreamOptions, make_file_input_stream

from streams_util import read_os, write_os

_ALPHABET = b"abcdefghij \t\r0123456789"
_NO_NEWLINE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))  # byte -> a character, never b"\n"


def text_file(rng: random.Random, n_lines: int, buffer_size: int, final_newline: bool) -> bytes:
    """Lines of random lengths: empty ones, short ones, some longer than a buffer."""
    lines = []
    for _ in range(n_lines):
        r = rng.random()
        if r < 0.1:
            n = 0
        elif r < 0.8:
            n = rng.randint(1, 120)
        elif r < 0.97:
            n = rng.randint(121, buffer_size)
        else:
            n = rng.randint(buffer_size, 3 * buffer_size + 17)
        lines.append(rng.randbytes(n).translate(_NO_NEWLINE) + b"\n")
    data = b"".join(lines)
    if not final_newline:
        data += b"no newline at the end"
    return data


def open_opts(buffer_size: int) -> FileInputStreamOptions:
    return FileInputStreamOptions(buffer_size=buffer_size, read_ahead=2)


@pytest.mark.parametrize("buffer_size", [4096, 131072])
@pytest.mark.parametrize("final_newline", [True, False], ids=["nl", "no-nl"])
def test_lines_match_python(run, scratch, buffer_size, final_newline):
    rng = random.Random(buffer_size + final_newline)
    path = scratch / "f"
    write_os(path, text_file(rng, 1500, buffer_size, final_newline))
    with open(path, "rb") as fh:
        want = fh.readlines()

    async def body():
        f = await ioengine.open_file_dma(path)
        try:
            async with make_file_input_stream(f, options=open_opts(buffer_size)) as stream:
                got = [line async for line in stream.lines()]
            assert got == want
            async with make_file_input_stream(f, options=open_opts(buffer_size)) as stream:
                got = []
                while line := await stream.readline():
                    assert isinstance(line, bytes)
                    got.append(line)
                assert await stream.readline() == b""
            assert got == want
        finally:
            await f.close()

    run(body())


def test_lines_of_empty_file_and_from_offset(run_default, scratch):
    path = scratch / "f"
    write_os(path, b"")
    path2 = scratch / "g"
    data = b"first line\nsecond\n\nfourth line is here\nlast"
    write_os(path2, data)

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f) as stream:
            assert [line async for line in stream.lines()] == []
        await f.close()
        g = await ioengine.open_file_dma(path2)
        async with make_file_input_stream(g, 3, 30) as stream:  # unaligned offset, cut mid-line
            assert [line async for line in stream.lines()] == data[3:33].splitlines(keepends=True)
        await g.close()

    run_default(body())


@pytest.mark.parametrize("seed", range(4))
def test_readline_mixed_with_read_exactly(run, scratch, seed):
    rng = random.Random(seed)
    buffer_size = rng.choice([512, 4096, 65536])
    data = text_file(rng, 800, buffer_size, final_newline=seed % 2 == 0)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, options=open_opts(buffer_size))
        pos = 0
        trace = []
        while True:
            op = rng.choice(["readline", "readline", "exactly", "upto", "skip", "readinto"])
            n = rng.choice([1, 2, rng.randint(1, 300), rng.randint(1, 3 * buffer_size)])
            trace.append((op, n))
            where = f"at {pos}, after {trace[-6:]}"
            if op == "readline":
                i = data.find(b"\n", pos)
                want = data[pos:] if i < 0 else data[pos:i + 1]
                got = await stream.readline()
                assert got == want, where
                pos += len(want)
                if not got:
                    break
            elif op == "exactly":
                want = data[pos:pos + n]
                if len(want) < n:  # the end: IncompleteReadError with what there was
                    with pytest.raises(asyncio.IncompleteReadError) as e:
                        await stream.read_exactly(n)
                    got = e.value.partial
                else:
                    got = bytes(await stream.read_exactly(n))
                assert got == want, where
                pos += len(want)
            elif op == "upto":
                got = bytes(await stream.read_up_to(n))
                assert 0 < len(got) <= n or pos >= len(data), where
                assert got == data[pos:pos + len(got)], where
                pos += len(got)
            elif op == "skip":
                await stream.skip(n)
                pos = min(pos + n, len(data))
            else:
                b = bytearray(n)
                got = await stream.readinto(b)
                assert b[:got] == data[pos:pos + n], where
                pos += got
        assert pos == len(data)
        await stream.close()
        await f.close()

    run(body())


def test_readinto_buffers(run_default, scratch):
    """readinto fills bytearrays, memoryview slices and multi-byte-item views completely (but at the end)."""
    import array

    data = random.Random(5).randbytes(300_001)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        f = await ioengine.open_file_dma(path)
        stream = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=4096, read_ahead=1))
        out = bytearray()
        b = bytearray(10_000)
        assert await stream.readinto(b) == 10_000
        out += b
        backing = bytearray(b"\xaa" * 50_000)
        assert await stream.readinto(memoryview(backing)[100:40_100]) == 40_000
        assert backing[:100] == b"\xaa" * 100 and backing[40_100:] == b"\xaa" * 9_900
        out += backing[100:40_100]
        words = array.array("I", bytes(8000))
        assert await stream.readinto(words) == len(words) * words.itemsize
        out += words.tobytes()
        assert await stream.readinto(bytearray()) == 0
        while True:
            b = bytearray(77_777)
            got = await stream.readinto(b)
            if got == 0:
                break
            assert got == len(b) or len(out) + got == len(data)
            out += b[:got]
        assert bytes(out) == data
        await stream.close()
        await f.close()

    run_default(body())
    assert read_os(path) == data
