"""Helpers of the streams suite: payloads, random write mixes, and readers that use each API."""
from __future__ import annotations

import array
import asyncio
import os
import random
from pathlib import Path

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

CREATE = ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE | ioengine.OpenFlags.TRUNCATE


def payload(seed: int, n: int) -> bytes:
    """``n`` pseudo-random bytes (no long runs: a misplaced block shows)."""
    return random.Random(seed).randbytes(n)


def write_sizes(rng: random.Random, total: int, max_write: int = 300 * 1024) -> list[int]:
    """A random mix of write sizes from 1 byte to ``max_write`` adding up to ``total``."""
    sizes = []
    left = total
    while left > 0:
        kind = rng.random()
        if kind < 0.3:
            n = rng.randint(1, 64)
        elif kind < 0.6:
            n = rng.randint(65, 9000)
        else:
            n = rng.randint(9001, max_write)
        n = min(n, left)
        sizes.append(n)
        left -= n
    return sizes


def as_bytes_like(rng: random.Random, piece: bytes):
    """The same bytes as a bytes, bytearray, memoryview of a bytearray slice, or array-backed view."""
    kind = rng.randrange(4)
    if kind == 0:
        return piece
    if kind == 1:
        return bytearray(piece)
    if kind == 2:
        pad = rng.randint(0, 7)
        backing = bytearray(rng.randbytes(pad)) + bytearray(piece) + bytearray(b"\xee" * 3)
        return memoryview(backing)[pad:pad + len(piece)]
    if len(piece) % 4 == 0 and piece:
        return memoryview(array.array("I", piece))  # itemsize 4: the stream must count bytes
    return memoryview(piece)


async def write_file(path: Path, data: bytes, rng: random.Random,
                     options: FileOutputStreamOptions | None = None, flushes: int = 3,
                     max_write: int = 300 * 1024) -> list[int]:
    """Write ``data`` through an output stream in a random mix of pieces, flushing at up to
    ``flushes`` random points; after each flush the size on disk must equal the bytes written.
    Returns the positions at which it flushed."""
    f = await ioengine.open_file_dma(path, CREATE)
    stream = make_file_output_stream(f, options)
    sizes = write_sizes(rng, len(data), max_write)
    flush_after = set(rng.sample(range(len(sizes)), min(flushes, len(sizes))))
    pos = 0
    flushed_at = []
    try:
        for i, n in enumerate(sizes):
            await stream.write(as_bytes_like(rng, data[pos:pos + n]))
            pos += n
            if i in flush_after:
                await stream.flush()
                flushed_at.append(pos)
                size = os.stat(path).st_size
                assert size == pos, f"after flush at {pos} bytes the file holds {size}"
    finally:
        await stream.close()
    assert f.closed, "the output stream's close() closes the file"
    return flushed_at


async def read_stream(path: Path, mode: str, rng: random.Random, offset: int = 0, length: int | None = None,
                      options: FileInputStreamOptions | None = None) -> bytes:
    """Everything an input stream over ``path`` gives, consumed with one API (``mode``)."""
    f = await ioengine.open_file_dma(path)
    try:
        stream = make_file_input_stream(f, offset, length, options)
        out = bytearray()
        async with stream:
            if mode == "iter":
                async for chunk in stream:
                    assert isinstance(chunk, memoryview) and len(chunk) > 0
                    out += chunk
            elif mode == "read":
                while True:
                    chunk = await stream.read()
                    assert isinstance(chunk, memoryview)
                    if not chunk:
                        break
                    out += chunk
                assert len(await stream.read()) == 0, "read() stays empty at the end"
            elif mode == "read_exactly":
                while True:
                    n = rng.randint(1, 200_000)
                    try:
                        chunk = await stream.read_exactly(n)
                    except asyncio.IncompleteReadError as e:  # only at the end, with what there was
                        assert e.expected == n and len(e.partial) < n
                        out += e.partial
                        with pytest.raises(asyncio.IncompleteReadError) as again:
                            await stream.read_exactly(1)
                        assert again.value.partial == b"", "the end stays the end"
                        break
                    assert len(chunk) == n
                    out += chunk
            elif mode == "read_up_to":
                while True:
                    n = rng.randint(1, 200_000)
                    chunk = await stream.read_up_to(n)
                    assert len(chunk) <= n
                    if not chunk:
                        break
                    out += chunk
            elif mode == "readinto":
                while True:
                    b = bytearray(rng.randint(1, 200_000))
                    got = await stream.readinto(b)
                    if got == 0:
                        break
                    out += b[:got]
            else:
                raise AssertionError(mode)
        return bytes(out)
    finally:
        await f.close()


def read_os(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def write_os(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
