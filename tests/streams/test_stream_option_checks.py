"""Stream options and stream arguments say which field was wrong and what was expected
(issue 15, item 9): TypeError for a wrong type, ValueError for a value out of range."""
from __future__ import annotations

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

BAD_INPUT = [
    ("buffer_size", "x", TypeError, "int"),
    ("buffer_size", 1.5, TypeError, "int"),
    ("buffer_size", True, TypeError, "int"),
    ("buffer_size", 0, ValueError, "[1,"),
    ("buffer_size", 1 << 40, ValueError, "[1,"),
    ("read_ahead", -1, ValueError, "[0,"),
    ("read_ahead", None, TypeError, "int"),
    ("dynamic_adjustments", 1, TypeError, "True or False"),
    ("io_class", "fast", TypeError, "IoClass"),
]
BAD_OUTPUT = [
    ("buffer_size", "x", TypeError, "int"),
    ("buffer_size", -5, ValueError, "[1,"),
    ("write_behind", 0, ValueError, "[1,"),
    ("write_behind", 2.0, TypeError, "int"),
    ("preallocation_size", -1, ValueError, "[0,"),
    ("preallocation_size", "1M", TypeError, "int"),
    ("io_class", 3, TypeError, "IoClass"),
]


@pytest.mark.parametrize("field, value, exc, words", BAD_INPUT)
def test_input_options_name_the_field(field, value, exc, words):
    with pytest.raises(exc) as ei:
        FileInputStreamOptions(**{field: value})
    msg = str(ei.value)
    assert f"FileInputStreamOptions.{field}" in msg and words in msg, msg


@pytest.mark.parametrize("field, value, exc, words", BAD_OUTPUT)
def test_output_options_name_the_field(field, value, exc, words):
    with pytest.raises(exc) as ei:
        FileOutputStreamOptions(**{field: value})
    msg = str(ei.value)
    assert f"FileOutputStreamOptions.{field}" in msg and words in msg, msg


def test_good_options_still_accepted():
    cls = ioengine.IoClass("checks")
    FileInputStreamOptions(buffer_size=4096, read_ahead=0, dynamic_adjustments=True, io_class=cls)
    FileOutputStreamOptions(buffer_size=1, write_behind=1, preallocation_size=0, io_class=cls)


def test_stream_arguments_name_the_parameter(run, scratch):
    path = scratch / "f"
    path.write_bytes(bytes(8192))

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RW)
        try:
            for kwargs, exc, words in [
                ({"offset": -1}, ValueError, "offset"), ({"offset": 1.0}, TypeError, "offset"),
                ({"offset": 1 << 63}, ValueError, "offset"), ({"length": -1}, ValueError, "length"),
                ({"length": "10"}, TypeError, "length"), ({"options": 4096}, TypeError, "options"),
            ]:
                with pytest.raises(exc, match=words):
                    make_file_input_stream(f, **kwargs)
            with pytest.raises(TypeError, match="n must be an int"):
                await make_file_input_stream(f).read_exactly(1.5)
            with pytest.raises(TypeError, match="offset"):
                make_file_output_stream(f, None, "0")
            with pytest.raises(TypeError, match="options"):
                make_file_output_stream(f, {"buffer_size": 4096})
        finally:
            await f.close()

    run(body())
