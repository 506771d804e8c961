"""Public argument checks: stream options, make_file_input_stream offsets/lengths, allocate_buffer
sizes. A value gives a result, TypeError (wrong type) or ValueError (out of range), never another
exception. The I/O cases run once per backend on real O_DIRECT files."""
from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

anything = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**70, max_value=2**70)
            | st.floats() | st.text(max_size=5) | st.binary(max_size=5) | st.lists(st.integers(), max_size=2)
            | st.builds(ioengine.IoClass, st.just("fuzz")))
small = st.integers(min_value=-5, max_value=1 << 20)

IN_FIELDS = {"buffer_size": anything | small, "read_ahead": anything | small,
             "dynamic_adjustments": anything, "io_class": anything}
OUT_FIELDS = {"buffer_size": anything | small, "write_behind": anything | small,
              "preallocation_size": anything | small, "io_class": anything}


@given(st.fixed_dictionaries({}, optional=IN_FIELDS))
def test_input_options(kw):
    try:
        FileInputStreamOptions(**kw)
    except (TypeError, ValueError) as e:
        assert "FileInputStreamOptions." in str(e), e


@given(st.fixed_dictionaries({}, optional=OUT_FIELDS))
def test_output_options(kw):
    try:
        FileOutputStreamOptions(**kw)
    except (TypeError, ValueError) as e:
        assert "FileOutputStreamOptions." in str(e), e


sizes = (st.integers(min_value=-(1 << 20), max_value=4 << 20) | st.sampled_from([-1, 0, 1, 1 << 63, 1 << 64, 2**100])
         | st.floats() | st.none() | st.text(max_size=3) | st.booleans())
offsets = st.integers(min_value=-10, max_value=1 << 20) | st.sampled_from([(1 << 63) - 1, 1 << 63, -1 << 63]) | anything


def _on_every_backend(run, scratch, body):
    """Run the whole hypothesis search inside one reactor per backend (fast: no loop per example)."""
    path = scratch / "f"
    path.write_bytes(bytes(64 << 10))

    async def outer():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        try:
            await body(f)
        finally:
            await f.close()

    run(outer())


def test_allocate_buffer_sizes(run, scratch):
    async def body(f):
        @settings(max_examples=100)
        @given(sizes)
        def check(size):
            try:
                b = f.allocate_buffer(size)
            except (TypeError, ValueError) as e:
                assert "size" in str(e), e
                return
            assert len(b) == size
            if size:
                b[size - 1] = 1
            b.release()

        check()

    _on_every_backend(run, scratch, body)


def test_input_stream_offsets_and_lengths(run, scratch):
    async def body(f):
        @settings(max_examples=60)
        @given(offsets, st.none() | offsets)
        def check(offset, length):
            try:
                s = make_file_input_stream(f, offset, length, FileInputStreamOptions(buffer_size=4096, read_ahead=1))
            except (TypeError, ValueError) as e:
                assert "offset" in str(e) or "length" in str(e), e
                return
            results.append((offset, length, s))

        results: list = []
        check()
        # The streams that were made read what the file holds at that range.
        for offset, length, s in results[:30]:
            try:
                got = bytes(await s.read_exactly(64 << 10))
            except asyncio.IncompleteReadError as e:  # the range ends first: what there was
                got = e.partial
            want = max(0, min(64 << 10, (64 << 10) - offset, length if length is not None else 1 << 62))
            assert len(got) == want, (offset, length, len(got))
            await s.close()
        assert results

    _on_every_backend(run, scratch, body)


def test_output_stream_offsets(run, scratch):
    async def body(f):
        @settings(max_examples=50)
        @given(offsets)
        def check(offset):
            try:
                make_file_output_stream(f, FileOutputStreamOptions(preallocation_size=0), offset)
            except (TypeError, ValueError) as e:
                assert "offset" in str(e), e

        check()
        await asyncio.sleep(0)

    _on_every_backend(run, scratch, body)
