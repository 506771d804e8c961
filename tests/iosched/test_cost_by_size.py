"""Per-size IOPS (``read/write_iops_by_size``, iotune --cost-sizes): a request costs 1/iops at its
size, interpolated between the sizes measured; the file format keeps them; a disk whose
middle sizes cost more than the two-point model says is protected only with them (issue 17 (b))."""
from __future__ import annotations

import pytest

from iosched import (
    READ,
    WRITE,
    CostModel,
    DiskProperties,
    IoPropertiesError,
    IoQueueConfig,
    dump_io_properties,
    parse_io_properties,
)
from iosched.sim import Workload, scaled_properties, simulate

BASE = dict(mountpoints=("/d",), read_iops=100_000, read_bandwidth=1 << 30, write_iops=80_000,
            write_bandwidth=800 << 20)
# 128 KiB writes measured at 2,500/s: 400 us each, where 128 KiB / 800 MiB/s says 156 us
TABLE = ((4096, 80_000.0), (131072, 2_500.0), (1 << 20, 760.0))
DISK = DiskProperties(**BASE, write_iops_by_size=TABLE)


def test_costs_interpolate_between_sizes_measured():
    m = CostModel(DISK)
    assert m.cost(WRITE, 4096) == pytest.approx(1 / 80_000)
    assert m.cost(WRITE, 512) == pytest.approx(1 / 80_000)  # below the smallest: its cost
    assert m.cost(WRITE, 131072) == pytest.approx(1 / 2_500)
    mid = (1 / 80_000 + 1 / 2_500) / 2
    assert m.cost(WRITE, (4096 + 131072) // 2) == pytest.approx(mid)
    assert m.cost(WRITE, 2 << 20) == pytest.approx(2 / 760)  # beyond: the largest's cost per byte
    # reads have no table: the two-point model ("max")
    assert m.cost(READ, 131072) == pytest.approx(131072 / (1 << 30))
    for budget in (1 / 80_000, 3e-4, 1 / 2_500, 1e-3, 5e-3):
        n = m.max_length(WRITE, budget)
        assert m.cost(WRITE, int(n)) <= budget * (1 + 1e-9)
        assert m.cost(WRITE, int(n) + 4096) > budget
    assert m.max_length(WRITE, 1e-6) == 0.0


def test_the_file_keeps_them():
    text = dump_io_properties([DISK])
    assert "write_iops_by_size" in text and "read_iops_by_size" not in text
    [back] = parse_io_properties(text)
    assert back == DISK
    [k] = parse_io_properties("disks:\n  - mountpoint: /d\n    read_iops: 1000\n    read_bandwidth: 1M\n"
                              "    write_iops: 1000\n    write_bandwidth: 1M\n"
                              "    read_iops_by_size: {4k: 1000, 128k: 300}\n")
    assert k.read_iops_by_size == ((4096, 1000.0), (131072, 300.0))


@pytest.mark.parametrize("value, needle", [
    ("{4096: 1000}", "at least two sizes"),
    ("{4096: 1000, 4k: 10}", "given twice"),
    ("{4096: -1, 8192: 10}", "positive"),
    ("[1, 2]", "pairs"),
    ("12", "mapping"),
])
def test_bad_tables_are_refused(value, needle):
    text = ("disks:\n  - mountpoint: /d\n    read_iops: 1000\n    read_bandwidth: 1M\n    write_iops: 1000\n"
            f"    write_bandwidth: 1M\n    write_iops_by_size: {value}\n")
    with pytest.raises(IoPropertiesError, match=needle) as ei:
        parse_io_properties(text)
    assert "write_iops_by_size" in str(ei.value)


def test_scaled_properties_scale_the_tables():
    half = scaled_properties(DISK, 0.5)
    assert half.write_iops_by_size == tuple((n, i / 2) for n, i in TABLE)


def test_middle_sizes_that_cost_more_are_charged_so():
    # The disk's 128 KiB writes take 400 us; a scheduler that believes the two-point model
    # (156 us) lets about 2.5x too many in, and the protected reads wait behind them.
    cfg = IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0, adaptive_in_disk=False)
    plain = DiskProperties(**BASE)
    loads = [Workload("reads", 1000, size=4096, rate=40_000, depth=64),
             Workload("writes", 100, direction=WRITE, size=131072, depth=8)]

    def p95(sched):
        r = simulate(loads, disk_props=DISK, sched_props=sched, duration=0.4, config=cfg, seed=3)
        return r.report(0.1)["reads"].p95

    assert p95(DISK) < 0.6 * p95(plain)
