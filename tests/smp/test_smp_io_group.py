"""One disk, many shards, for real: the shards' queues share the bucket in shared memory.

The in-memory reference (iosched.IoGroup) and the shared-memory one (native/io_group.c) give
the same answers to the same sequence of operations; shards of a real run share one bucket, so
what they dispatch together stays within the disk's calibrated rate.
"""
from __future__ import annotations

import os

import pytest

import ioengine
from ioengine import OpenFlags, smp
from ioengine.smp.io_group import DISK_SLOTS, ShmIoGroup, group_bytes
from iosched import IoGroup

import smp_helpers as h


@pytest.fixture
def shm_group():
    fd = os.memfd_create("test-io-group", os.MFD_CLOEXEC)
    os.ftruncate(fd, group_bytes())
    try:
        yield lambda shard: ShmIoGroup(fd, 0, shard, 2)
    finally:
        os.close(fd)


def test_shared_memory_and_reference_agree(shm_group):
    g = IoGroup(2)
    ref = [g.disk(7, 0), g.disk(7, 1)]
    shm = [shm_group(0).disk(7), shm_group(1).disk(7)]
    ops = [
        ("bind", 0, (0.9, 0.00075, 1.0)), ("bind", 1, (0.9, 0.00075, 1.0)),
        ("consume", 0, (0.0004,)), ("sync", 1, (1.0001, 0.0003)), ("consume", 1, (0.0009,)),
        ("sync", 0, (1.0002, 0.0001)), ("sync", 1, (1.002, 0.0)), ("tokens", 0, ()),
        ("consume", 0, (0.002,)), ("sync", 0, (1.0021, 0.0005)), ("sync", 1, (1.0030, 0.00025)),
    ]
    for name, shard, args in ops:
        a = getattr(ref[shard], name)(*args)
        b = getattr(shm[shard], name)(*args)
        assert a == pytest.approx(b, abs=1e-9), (name, shard, args)
    slots = [(d.class_slot("A"), d.class_slot("B")) for d in (ref[0], shm[0])]
    assert slots == [(0, 1), (0, 1)]
    assert shm[1].class_slot("B") == 1  # the same entry from the other shard
    steps = [("charge", 0, (0, 0.004)), ("lead", 0, (0, 2.0, 0.001, 0.01)), ("mark", 1, (1, 2.0)),
             ("lead", 0, (0, 2.0, 0.001, 0.01)), ("lead", 0, (0, 2.0, 0.001, 0.002)), ("mark", 0, (0, 2.0)),
             ("lead", 1, (1, 2.0, 0.001, 0.002)), ("charge", 1, (1, 0.001)), ("lead", 0, (0, 2.0005, 0.001, 0.01)),
             ("lead", 0, (0, 2.5, 0.001, 0.01)), ("mark", 1, (1, None)), ("lead", 0, (0, 2.0, 0.001, 0.01))]
    for name, shard, args in steps:
        a = getattr(ref[shard], name)(*args)
        b = getattr(shm[shard], name)(*args)
        if name == "lead":
            assert a[1] == b[1] and a[0] == pytest.approx(b[0], abs=1e-9), (name, shard, args, a, b)


def test_disks_get_their_own_slots(shm_group):
    g = shm_group(0)
    disks = [g.disk(dev) for dev in range(DISK_SLOTS)]
    assert all(d is not None for d in disks)
    assert g.disk(DISK_SLOTS) is None  # full: that disk is throttled per shard
    disks[3].consume(0.5)
    assert shm_group(1).disk(3).tokens() == pytest.approx(-0.5)
    with pytest.raises(RuntimeError, match="io classes per disk"):
        for k in range(100):
            disks[0].class_slot(f"c{k}")


def test_two_shards_share_one_bucket(backend, scratch):
    path = scratch / "group.dat"
    with open(path, "wb") as fh:
        fh.write(os.urandom(4 << 20))
    # a disk described as slow: 4000 reads/s; the two shards' reads together must stay within it
    props = (f"disks:\n  - mountpoint: {scratch}\n    read_iops: 4000\n    read_bandwidth: 100000000\n"
             f"    write_iops: 4000\n    write_bandwidth: 100000000\n")

    async def main():
        return await smp.invoke_on_all(h.read_blocks_report, str(path), 300, 8)

    reports = ioengine.run(main, smp=2, backend=backend, io_properties=props)
    assert [r["shard"] for r in reports] == [0, 1] and all(r["shared"] for r in reports)
    assert reports[0]["pid"] != reports[1]["pid"]
    t0 = min(r["t0"] for r in reports)
    t1 = max(r["t1"] for r in reports)
    dispatched = sum(r["dispatched"] for r in reports)
    cost = dispatched / 600  # one read's cost (both shards did 300)
    # what both dispatched is at most the bucket's fill plus its rate over the time they ran
    # (an upper bound: a slow machine only makes the run longer); alone, each shard's own
    # bucket would have let twice as much through
    assert dispatched <= reports[0]["capacity"] + (t1 - t0) * 1.0 + 2 * cost
    assert t1 - t0 >= (600 - 8) / 4000 * 0.95


def test_one_shard_alone_is_not_in_a_group(scratch):
    path = scratch / "alone.dat"

    async def main():
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            buf = f.allocate_buffer(4096)
            await f.dma_write(0, buf)
        (disk,) = ioengine.metrics()[0]["disks"].values()
        return disk["queue"]["shared"]

    props = f"disks:\n  - mountpoint: {scratch}\n    read_iops: 4000\n    read_bandwidth: 100000000\n" \
            f"    write_iops: 4000\n    write_bandwidth: 100000000\n"
    assert ioengine.run(main, io_properties=props) is False
