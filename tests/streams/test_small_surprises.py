"""Issue 18, item 6: io class names, File.logical_size, close_file=, read_exactly at the end,
view lifetimes, ioengine.run(main) and run(main())."""
from __future__ import annotations

import asyncio
import pickle

import pytest

import ioengine
from ioengine import IoClass
from ioengine.fstream import FileInputStreamOptions, make_file_input_stream, make_file_output_stream

from streams_util import payload, read_os, write_os


def test_io_class_name_twice(run, scratch):
    path = scratch / "f"
    write_os(path, payload(1, 8192))

    async def body():
        fg = IoClass("issue18-fg", shares=500)
        assert IoClass("issue18-fg", shares=500) is fg
        assert IoClass("issue18-fg", 500.0) is fg
        with pytest.raises(ValueError, match="issue18-fg"):
            IoClass("issue18-fg")  # default shares, not 500
        fg.update_bandwidth(1 << 30)
        again = IoClass("issue18-fg", 500)
        assert again is fg and again.bandwidth_limit == 1 << 30, "the existing class keeps its state"
        assert pickle.loads(pickle.dumps(fg)) is fg
        async with await ioengine.open_file_dma(path) as f:
            buf = f.allocate_buffer(4096)
            assert await f.dma_read(0, buf, io_class=fg) == 4096
            assert await f.dma_read(4096, buf, io_class=IoClass("issue18-fg", 500)) == 4096
            other = IoClass("issue18-other", 100)
            with pytest.raises(ValueError, match="issue18-fg"):
                other.rename("issue18-fg")
            buf.release()

    run(body())


def test_logical_size(run, scratch):
    path = scratch / "f"
    write_os(path, payload(2, 10_000))

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        assert f.logical_size == 10_000 == await f.size()
        buf = f.allocate_buffer(8192)
        fut = asyncio.ensure_future(f.dma_write(16384, buf))
        await asyncio.sleep(0)
        assert f.logical_size == 16384 + 8192, "writes in flight count"
        await fut
        assert f.logical_size == 16384 + 8192 == await f.size()
        await f.truncate(5)
        assert f.logical_size == 5 == await f.size()
        buf.release()
        out = make_file_output_stream(f, close_file=False)
        await out.write(b"x" * 7000)
        await out.flush()
        assert f.logical_size == 7000 == await f.size()
        await out.close()
        assert not f.closed, "close_file=False: the output stream leaves the file open"
        assert f.logical_size == 7000
        await f.close()

    run(body())


def test_input_stream_close_file(run, scratch):
    path = scratch / "f"
    write_os(path, payload(3, 5000))

    async def body():
        f = await ioengine.open_file_dma(path)
        async with make_file_input_stream(f) as s:
            await s.read()
        assert not f.closed, "by default an input stream leaves its file open"
        async with make_file_input_stream(f, close_file=True) as s:
            await s.read()
        assert f.closed
        g = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        async with make_file_output_stream(g) as out:
            await out.write(b"y")
        assert g.closed, "by default an output stream closes its file"
        with pytest.raises(TypeError, match="close_file"):
            make_file_input_stream(g, close_file=1)

    run(body())
    assert read_os(path) == b"y"


def test_read_exactly_at_the_end_like_readexactly(run, scratch):
    data = payload(4, 10_000)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        async with await ioengine.open_file_dma(path) as f:
            s = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=4096))
            assert bytes(await s.read_exactly(9000)) == data[:9000]
            with pytest.raises(asyncio.IncompleteReadError) as e:
                await s.read_exactly(5000)
            assert e.value.partial == data[9000:] and e.value.expected == 5000
            assert s.position == 10_000
            with pytest.raises(asyncio.IncompleteReadError) as e:
                await s.read_exactly(1)
            assert e.value.partial == b""
            assert len(await s.read_exactly(0)) == 0
            await s.close()
            with pytest.raises(ioengine.ShortReadError) as e:
                await f.dma_read_exactly(9990, 100)
            assert e.value.partial == data[9990:] and e.value.expected == 100

    run(body())


def test_views_outlive_the_stream(run, scratch):
    data = payload(5, 300_000)
    path = scratch / "f"
    write_os(path, data)

    async def body():
        async with await ioengine.open_file_dma(path) as f:
            s = make_file_input_stream(f, options=FileInputStreamOptions(buffer_size=65536))
            views = [await s.read() for _ in range(3)]
            await s.close()
            assert b"".join(bytes(v) for v in views) == data[:3 * 65536]

    run(body())


async def _main(x=1):
    await asyncio.sleep(0)
    return x * 2


def test_run_takes_a_coroutine_or_an_async_function():
    assert ioengine.run(_main()) == 2
    assert ioengine.run(_main) == 2
    assert ioengine.run(_main, 21) == 42
    assert ioengine.run(_main, backend="threads") == 2
