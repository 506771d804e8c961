"""io_properties parser: a list of DiskProperties or IoPropertiesError (a ValueError) -- and a
TypeError only for text that is neither str nor bytes -- for any input."""
from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from iosched import DiskProperties, IoPropertiesError, dump_io_properties, load_io_properties, parse_io_properties
from iosched.properties import parse_size

KEYS = ["mountpoint", "mountpoints", "read_iops", "read_bandwidth", "write_iops", "write_bandwidth",
        "read_saturation_length", "write_saturation_length", "physical_block_size", "duplex", "rate_factor",
        "disks", "bogus"]
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**200, max_value=2**200)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["1G", "4k", "1.5M", "0", "-1", "1e400", "nan", ".inf", "/", "", "10KiB", "3T"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6),
                      max_leaves=25)
entry = st.fixed_dictionaries({"mountpoint": st.sampled_from(["/", "/data", ""]) | scalars},
                              optional={k: values for k in KEYS[1:11]})
documents = st.one_of(st.fixed_dictionaries({"disks": st.lists(entry, max_size=3) | values}), values)


def _parse(text):
    try:
        disks = parse_io_properties(text, source="fuzz")
    except IoPropertiesError as e:
        assert str(e)
        return None
    assert all(isinstance(d, DiskProperties) for d in disks)
    # What parses can be written and read back.
    again = parse_io_properties(dump_io_properties(disks))
    assert [d.mountpoints for d in again] == [d.mountpoints for d in disks]
    return disks


@given(documents)
def test_structured_documents(doc):
    try:
        text = yaml.safe_dump(doc)
    except (yaml.YAMLError, ValueError, OverflowError):
        return
    _parse(text)


@given(st.text(max_size=300))
def test_any_text(text):
    _parse(text)


@given(st.binary(max_size=200))
def test_any_bytes(data):
    _parse(data)


@given(st.binary(max_size=200))
def test_any_file(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("props") / "io_properties.yaml"
    p.write_bytes(data)
    try:
        load_io_properties(p)
    except IoPropertiesError as e:
        assert e.source == str(p) and str(p) in str(e)


@given(scalars | values)
def test_parse_size(value):
    try:
        n = parse_size(value, field="f")
    except Exception as e:  # the internal field error, wrapped with context by the loader
        assert type(e).__name__ == "_FieldError", repr(e)
        return
    assert n > 0
