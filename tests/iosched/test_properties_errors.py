"""io_properties errors name the file and say what was wrong (issue 15, items 6 and 9)."""
from __future__ import annotations

import pytest

from iosched import IoPropertiesError, load_io_properties, parse_io_properties

GOOD = "disks:\n  - mountpoint: /\n    read_iops: 1000\n    read_bandwidth: 1G\n    write_iops: 1000\n" \
       "    write_bandwidth: 1G\n"


def test_non_utf8_file_names_the_file(tmp_path):
    p = tmp_path / "props.yaml"
    p.write_bytes(GOOD.encode().replace(b"mountpoint: /", b"mountpoint: /\xe9t\xe9"))
    with pytest.raises(IoPropertiesError) as ei:
        load_io_properties(p)
    msg = str(ei.value)
    assert str(p) in msg and "not UTF-8" in msg and "0xe9" in msg, msg
    assert ei.value.source == str(p)


def test_yaml_error_is_one_line_with_the_place(tmp_path):
    p = tmp_path / "props.yaml"
    p.write_text("disks:\n  - mountpoint: [\n")
    with pytest.raises(IoPropertiesError) as ei:
        load_io_properties(p)
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg and "line 3" in msg, msg


@pytest.mark.parametrize("value", ["1" * 400, "9" * 30 + "T", str(1 << 64)])
def test_huge_numbers_are_field_errors(value):
    with pytest.raises(IoPropertiesError, match="read_iops") as ei:
        parse_io_properties(GOOD.replace("read_iops: 1000", f"read_iops: {value}"))
    assert len(str(ei.value)) < 400


def test_bytes_and_wrong_types():
    assert parse_io_properties(GOOD.encode())[0].read_iops == 1000
    with pytest.raises(IoPropertiesError, match="not UTF-8"):
        parse_io_properties(b"\xff\xfe")
    with pytest.raises(TypeError, match="text must be str"):
        parse_io_properties(42)


def test_deep_nesting_is_a_parse_error():
    with pytest.raises(IoPropertiesError):
        parse_io_properties("[" * 100_000)
