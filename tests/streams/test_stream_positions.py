"""Stream positions: output ``position`` / ``durable_position``, input ``position`` (issue 18, item 3)."""
from __future__ import annotations

import random

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE, payload, read_os, write_os


def test_output_positions(run, scratch):
    path = scratch / "f"
    data = payload(1, 300_000)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=65536))
        assert (out.position, out.durable_position) == (0, 0)
        await out.write(data[:10])
        assert (out.position, out.durable_position) == (10, 0)
        await out.flush()
        assert (out.position, out.durable_position) == (10, 10)
        await out.write(data[10:200_000])
        assert (out.position, out.durable_position) == (200_000, 10)
        await out.flush()
        assert out.durable_position == 200_000
        await out.write(data[200_000:])
        assert out.position == 300_000 and out.durable_position == 200_000
        await out.close()
        assert out.durable_position == 300_000

    run(body())
    assert read_os(path) == data


def test_output_positions_from_an_offset(run, scratch):
    path = scratch / "f"
    write_os(path, bytes(8192))

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        out = make_file_output_stream(f, offset=4096)
        assert (out.position, out.durable_position) == (4096, 4096)
        await out.write(b"abc")
        assert out.position == 4099
        await out.flush()
        assert out.durable_position == 4099
        await out.close()

    run(body())
    assert read_os(path) == bytes(4096) + b"abc"


def test_input_position(run, scratch):
    path = scratch / "f"
    size = 1_000_003
    data = payload(2, size)
    write_os(path, data)
    rng = random.Random(5)

    async def body():
        f = await ioengine.open_file_dma(path)
        for offset in (0, 1, 4095, 70_000):
            s = make_file_input_stream(f, offset, options=FileInputStreamOptions(buffer_size=16384, read_ahead=2))
            assert s.position == offset
            pos = offset
            while True:
                op = rng.choice(["read", "up_to", "exactly", "skip", "readinto"])
                n = rng.randint(1, 40_000)
                if op == "read":
                    got = bytes(await s.read())
                elif op == "up_to":
                    got = bytes(await s.read_up_to(n))
                elif op == "exactly":
                    try:
                        got = bytes(await s.read_exactly(n))
                    except Exception as e:  # IncompleteReadError at the end (item 6)
                        got = bytes(e.partial)
                elif op == "readinto":
                    b = bytearray(n)
                    got = bytes(b[:await s.readinto(b)])
                else:
                    await s.skip(n)
                    pos += n  # a skip past the end of the file counts whole
                    assert s.position == pos
                    if pos >= size:
                        break
                    continue
                assert got == data[pos:pos + len(got)], op
                pos += len(got)
                assert s.position == pos, op
                if not got:
                    assert pos >= size
                    break
            await s.close()
        # with a length: position stops at offset + length
        s = make_file_input_stream(f, 10, 100)
        await s.skip(1000)
        assert s.position == 110
        await s.close()
        s = make_file_input_stream(f, 0)
        line = await s.readline()
        assert s.position == len(line)
        await s.close()
        await f.close()

    run(body())
