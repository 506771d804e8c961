"""io_properties.yaml: read what Seastar's iotune writes, write what Seastar reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from iosched.properties import (
    DiskProperties,
    IoPropertiesError,
    dump_io_properties,
    load_io_properties,
    parse_io_properties,
    save_io_properties,
)

SAMPLE = Path("/work/shared/samples/io_properties-seastar.yaml")

ENTRY = """\
disks:
  - mountpoint: /var/lib/data
    read_iops: 95000
    read_bandwidth: 900000000
    write_iops: 22000
    write_bandwidth: 1400000000
"""


def test_loads_seastar_sample_unchanged():
    if SAMPLE.exists():
        disks = load_io_properties(SAMPLE)
    else:  # the same content, so the test runs off this machine too
        disks = parse_io_properties(ENTRY)
    assert disks == [
        DiskProperties(
            mountpoints=("/var/lib/data",),
            read_iops=95000, read_bandwidth=900000000,
            write_iops=22000, write_bandwidth=1400000000,
        )
    ]
    d = disks[0]
    assert d.mountpoint == "/var/lib/data"
    assert d.read_saturation_length is None and d.duplex is None and d.rate_factor == 1.0


def test_round_trip_all_fields(tmp_path):
    disks = [
        DiskProperties(("/a",), 95000, 900_000_000, 22000, 1_400_000_000),
        DiskProperties(
            ("/b", "/c"), 1_000_000, 7_000_000_000, 500_000, 5_000_000_000,
            read_saturation_length=131072, write_saturation_length=65536,
            physical_block_size=4096, duplex=True, rate_factor=1.5,
        ),
        DiskProperties(("/d",), 200, 150_000_000, 180, 140_000_000, duplex=False, rate_factor=0.25),
    ]
    text = dump_io_properties(disks)
    assert parse_io_properties(text) == disks
    path = tmp_path / "io_properties.yaml"
    save_io_properties(disks, path)
    assert load_io_properties(path) == disks
    assert load_io_properties(str(path)) == disks


def test_written_file_has_seastar_shape():
    disks = [
        DiskProperties(("/a",), 95000.4, 9e8, 22000, 1.4e9, read_saturation_length=131072),
        DiskProperties(("/b", "/c"), 1, 2, 3, 4),
    ]
    doc = yaml.safe_load(dump_io_properties(disks))
    assert list(doc) == ["disks"]
    first, second = doc["disks"]
    assert first["mountpoint"] == "/a" and "mountpoints" not in first
    # Seastar's parse_memory_size only takes integers
    for key in ("read_iops", "read_bandwidth", "write_iops", "write_bandwidth", "read_saturation_length"):
        assert type(first[key]) is int, key
    assert first["read_iops"] == 95000
    assert "duplex" not in first and "rate_factor" not in first  # only written when stated
    assert second["mountpoints"] == ["/b", "/c"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4k", 4096), ("4K", 4096), ("4KiB", 4096), ("4kB", 4096), ("4Ki", 4096),
        ("2M", 2 << 20), ("3G", 3 << 30), ("1T", 1 << 40), ("512B", 512), ("512", 512),
        ("1.5G", int(1.5 * (1 << 30))), ("1m", 1 << 20), ("4kib", 4096), ("2g", 2 << 30),
    ],
)
def test_suffixes_are_powers_of_1024(text, expected):
    d = parse_io_properties(
        f"disks:\n- mountpoint: /x\n  read_iops: {text}\n  read_bandwidth: {text}\n"
        f"  write_iops: 1\n  write_bandwidth: 1\n  read_saturation_length: 4k\n"
    )[0]
    assert d.read_iops == expected and d.read_bandwidth == expected
    assert d.read_saturation_length == 4096


def test_mountpoints_list_and_optional_fields():
    d = parse_io_properties(
        "disks:\n"
        "  - mountpoints: [/data, /commitlog]\n"
        "    read_iops: 100k\n    read_bandwidth: 1G\n    write_iops: 50k\n    write_bandwidth: 512M\n"
        "    write_saturation_length: 64k\n    physical_block_size: 4096\n"
        "    duplex: true\n    rate_factor: 0.5\n"
    )[0]
    assert d.mountpoints == ("/data", "/commitlog")
    assert d.mountpoint == "/data:/commitlog"
    assert (d.read_iops, d.write_iops) == (102400, 51200)
    assert (d.read_bandwidth, d.write_bandwidth) == (1 << 30, 512 << 20)
    assert d.write_saturation_length == 65536 and d.physical_block_size == 4096
    assert d.duplex is True and d.rate_factor == 0.5


def test_float_rates_accepted_and_written_as_integers():
    d = parse_io_properties(
        "disks:\n- mountpoint: /x\n  read_iops: 1.5e+5\n  read_bandwidth: 1e9\n"
        "  write_iops: 100.5\n  write_bandwidth: 7\n"
    )[0]
    assert d.read_iops == 150000 and d.read_bandwidth == 10**9 and d.write_iops == 100.5
    out = yaml.safe_load(dump_io_properties([d]))["disks"][0]
    assert out["write_iops"] in (100, 101) and type(out["write_iops"]) is int


def _err(text: str) -> IoPropertiesError:
    with pytest.raises(IoPropertiesError) as ei:
        parse_io_properties(text)
    return ei.value


def test_malformed_yaml():
    e = _err("disks:\n  - mountpoint: [unclosed\n")
    assert "not valid YAML" in str(e)
    assert isinstance(e, ValueError)


def test_missing_field_names_entry_and_field():
    e = _err(ENTRY + "  - mountpoint: /second\n    read_iops: 1\n    read_bandwidth: 1\n    write_iops: 1\n")
    assert e.entry == 1 and e.mountpoint == "/second" and e.field == "write_bandwidth"
    msg = str(e)
    assert "disks[1]" in msg and "/second" in msg and "write_bandwidth" in msg and "missing" in msg


def test_missing_mountpoint():
    e = _err("disks:\n- read_iops: 1\n  read_bandwidth: 1\n  write_iops: 1\n  write_bandwidth: 1\n")
    assert e.entry == 0 and e.field == "mountpoint" and "mountpoints" in str(e)


@pytest.mark.parametrize("value", ["-5", "0", "-1k", "lots", "1e", "[1, 2]", "true", ".inf"])
def test_bad_number_names_entry_field_and_expectation(value):
    e = _err(ENTRY.replace("read_iops: 95000", f"read_iops: {value}"))
    assert e.entry == 0 and e.mountpoint == "/var/lib/data" and e.field == "read_iops"
    msg = str(e)
    assert "disks[0]" in msg and "read_iops" in msg and "expected a positive" in msg


@pytest.mark.parametrize(
    "text, field",
    [
        (ENTRY + "    read_saturation_length: 1.3k\n", "read_saturation_length"),  # 1331.2: not an integer
        (ENTRY + "    duplex: maybe\n", "duplex"),
        (ENTRY + "    rate_factor: -1\n", "rate_factor"),
        (ENTRY + "    write_saturation_lenght: 64k\n", "write_saturation_lenght"),  # typo: unknown key
        (ENTRY.replace("mountpoint: /var/lib/data", "mountpoints: /a\n    mountpoint: /b"), "mountpoint"),
        (ENTRY.replace("mountpoint: /var/lib/data", "mountpoints: []"), "mountpoints"),
        (ENTRY.replace("mountpoint: /var/lib/data", "mountpoints: {a: 1}"), "mountpoints"),
    ],
)
def test_bad_optional_or_unknown_fields(text, field):
    e = _err(text)
    assert e.entry == 0 and e.field == field and field in str(e)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "top level"),
        ("- a\n- b\n", "top level"),
        ("disks: 3\n", "list"),
        ("disks:\n  mountpoint: /a\n", "list"),
        ("disks:\n- 5\n", "disks[0]"),
        ("disks: []\nextra: {}\n", "extra"),
        ("other: 1\n", "other"),
        ("{}\n", "disks"),
    ],
)
def test_unknown_structure(text, needle):
    assert needle in str(_err(text))


def test_duplicate_mountpoint():
    e = _err(ENTRY + ENTRY.split("\n", 1)[1])
    assert e.entry == 1 and "already configured" in str(e)


def test_file_errors_name_the_file(tmp_path):
    p = tmp_path / "io.yaml"
    p.write_text("disks: 3\n")
    with pytest.raises(IoPropertiesError, match=str(p)):
        load_io_properties(p)


def test_dataclass_validates_direct_construction():
    with pytest.raises(IoPropertiesError, match="read_bandwidth"):
        DiskProperties(("/a",), 1, 0, 1, 1)
    with pytest.raises(IoPropertiesError, match="mountpoints"):
        DiskProperties((), 1, 1, 1, 1)
    # a lone string is one mountpoint, not a tuple of characters
    assert DiskProperties("/a", 1, 1, 1, 1).mountpoints == ("/a",)


@pytest.mark.parametrize("text", ["1.5M", "1e3", "4q", "", "-1", "k"])
def test_integer_sizes_refuse_fractions_and_junk(text):
    from iosched.properties import parse_size_text

    with pytest.raises(ValueError):
        parse_size_text(text, fraction=False)
