"""One disk, many shards (iosched.io_group), on the simulated disk in virtual time.

The shared bucket: N shards together dispatch what one shard would with the same properties;
without the group each shard throttles alone and N shards get N times as much. Shares across
shards: a class on shard 0 and one on shard 1 share the disk by their shares; a class used on
two shards gets its share once; nobody waits while the disk is not contended.
"""
from __future__ import annotations

import pytest

from iosched import DiskProperties, GroupDisk, IoGroup, IoQueue, IoQueueConfig
from iosched.sim import Workload, scaled_properties, simulate

PROPS = DiskProperties(mountpoints=("/",), read_iops=100_000, read_bandwidth=1e9,
                       write_iops=80_000, write_bandwidth=8e8)
HALF = scaled_properties(PROPS, 0.5)
CFG = IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0, adaptive_in_disk=False)


def _iops(ws: list[Workload], shards: list[int], *, shared: bool = True, sched: DiskProperties = PROPS,
          duration: float = 0.3) -> dict[str, float]:
    r = simulate(ws, disk_props=PROPS, sched_props=sched, duration=duration, config=CFG, shards=shards,
                 shared=shared)
    return {k: v.iops for k, v in r.report(0.1, duration).items()}


@pytest.mark.parametrize("n", [1, 2, 4])
def test_shards_together_get_what_one_shard_gets(n: int) -> None:
    # the properties say half of what the disk does: the bucket, not the disk, is the limit
    one = _iops([Workload("c", depth=32)], [0], sched=HALF)["c"]
    together = _iops([Workload("c", depth=32) for _ in range(n)], list(range(n)), sched=HALF)["c"]
    assert together == pytest.approx(one, rel=0.02)
    assert one == pytest.approx(HALF.read_iops, rel=0.02)


def test_without_the_group_each_shard_throttles_alone() -> None:
    alone = _iops([Workload("c", depth=32) for _ in range(2)], [0, 1], shared=False, sched=HALF)["c"]
    assert alone == pytest.approx(2 * HALF.read_iops, rel=0.05)  # twice the calibrated capacity


@pytest.mark.parametrize("sched", [PROPS, HALF], ids=["rated", "half"])
def test_shares_hold_across_shards(sched: DiskProperties) -> None:
    ws = [Workload("A", shares=400, depth=32), Workload("B", shares=100, depth=32)]
    got = _iops(ws, [0, 1], sched=sched)
    assert got["A"] / got["B"] == pytest.approx(4.0, rel=0.10)
    assert got["A"] + got["B"] == pytest.approx(sched.read_iops, rel=0.05)  # the disk stays full
    # and the same classes without the group: each shard gets what its own bucket allows
    apart = _iops(ws, [0, 1], sched=sched, shared=False)
    assert apart["A"] / apart["B"] == pytest.approx(1.0, rel=0.10)


def test_a_class_on_two_shards_gets_its_share_once() -> None:
    ws = [Workload("A", shares=400, depth=32), Workload("B", shares=100, depth=32),
          Workload("B", shares=100, depth=32)]
    got = _iops(ws, [0, 1, 0])
    assert got["A"] / got["B"] == pytest.approx(4.0, rel=0.10)


def test_a_class_that_cannot_use_its_share_leaves_it_to_the_others() -> None:
    # A has the shares but only one request outstanding: B (other shard) gets the rest
    ws = [Workload("A", shares=400, depth=1), Workload("B", shares=100, depth=32)]
    r = simulate(ws, disk_props=PROPS, duration=0.3, config=CFG, shards=[0, 1])
    assert r.utilisation(0.1, 0.3) > 0.95
    rep = r.report(0.1, 0.3)
    assert rep["B"].iops > 4 * rep["A"].iops


def test_an_idle_class_banks_no_more_than_the_forgiveness() -> None:
    # B starts late: it must not get the disk to itself for long to catch up on A's past
    ws = [Workload("A", shares=100, depth=32), Workload("B", shares=100, depth=32, start=0.2)]
    r = simulate(ws, disk_props=PROPS, duration=0.4, config=CFG, shards=[0, 1])
    rep = r.report(0.2, 0.4)
    assert rep["A"].iops / rep["B"].iops == pytest.approx(1.0, rel=0.10)
    early = r.report(0.2, 0.21)
    assert early["A"].iops > 0.2 * early["B"].iops  # A was not starved while B caught up


def test_group_disk_bucket() -> None:
    g = IoGroup(2)
    a, b = g.disk("d", 0), g.disk("d", 1)
    a.bind(1.0, 0.001, 10.0)
    b.bind(1.0, 0.001, 10.0)  # the second shard does not fill it again
    assert a.tokens() == pytest.approx(0.001)
    b.consume(0.0015)  # into deficit
    tokens, others = a.sync(10.0, 0.0002)
    assert tokens == pytest.approx(-0.0005)
    assert others == 0.0
    tokens, others = b.sync(10.0007, 0.0001)  # 0.7 ms at rate 1 pays the deficit and more
    assert tokens == pytest.approx(0.0002)
    assert others == pytest.approx(0.0002)  # what shard 0 has in the disk
    assert b.sync(11.0, 0.0)[0] == pytest.approx(0.001)  # capped at the limit
    with pytest.raises(ValueError, match="shard"):
        g.disk("d", 2)
    with pytest.raises(ValueError, match="shards"):
        IoGroup(0)


def test_group_disk_lead_and_forgiveness() -> None:
    g = IoGroup(2)
    d0, d1 = g.disk(0, 0), g.disk(0, 1)
    a, b = d0.class_slot("A"), d1.class_slot("B")
    assert d1.class_slot("A") == a  # one slot per name, on every shard
    d0.charge(a, 5.0)
    assert d0.lead(a, 1.0, 1.0, 100.0) == (0.0, 0)  # nobody else waits
    d1.mark(b, 1.0)  # B has requests waiting on shard 1
    assert d0.lead(a, 1.0, 1.0, 100.0) == (5.0, 1)
    assert d0.lead(a, 1.0, 1.0, 2.0) == (2.0, 1)  # B counts as at most 2.0 behind
    d0.mark(a, 1.0)
    assert d1.lead(b, 1.0, 1.0, 2.0) == (-2.0, 1)  # B raises itself to 2.0 behind A
    assert d0.lead(a, 1.0, 1.0, 100.0) == (2.0, 1)
    assert d0.lead(a, 3.0, 1.0, 100.0) == (0.0, 0)  # B's mark is older than the window
    d1.mark(b, None)  # B no longer waits
    assert d0.lead(a, 1.0, 1.0, 100.0) == (0.0, 0)


def test_queue_with_shared_disk_reports_shared_tokens() -> None:
    g = IoGroup(2)
    q0 = IoQueue(PROPS, CFG, 0.0, g.disk(0, 0))
    q1 = IoQueue(PROPS, CFG, 0.0, g.disk(0, 1))
    assert q0.shared and q1.shared
    assert q0.tokens == q1.tokens == pytest.approx(q0.capacity)
    st = q0.get_class("default")
    q0.queue(st, 0, 4096, None, 0.0)
    assert len(q0.dispatch(0.0)) == 1
    assert q1.tokens == pytest.approx(q0.capacity - q0.cost_model.cost(0, 4096))
    assert not IoQueue(None, CFG, 0.0, g.disk(1, 0)).shared  # no properties: nothing to share
    assert isinstance(g.disk(0, 1), GroupDisk)


def test_a_shard_held_by_the_others_in_disk_cost_looks_again() -> None:
    # shard 1 fills the in-disk bound; shard 0's queued request can go only when shard 1's
    # requests complete, which shard 0 is not told of: it must come back on its own
    g = IoGroup(2)
    q0 = IoQueue(PROPS, CFG, 0.0, g.disk(0, 0))
    q1 = IoQueue(PROPS, CFG, 0.0, g.disk(0, 1))
    s1 = q1.get_class("default")
    now = 0.0
    sent = []
    while True:
        now += 1e-3  # tokens refill; only the in-disk bound holds
        q1.queue(s1, 0, 4096, None, now)
        got = q1.dispatch(now)
        if not got:
            break
        sent += got
    s0 = q0.get_class("default")
    q0.queue(s0, 0, 4096, None, now)
    assert q0.dispatch(now) == []
    t = q0.next_dispatch_time(now)
    assert t is not None and now < t < now + 1e-3
    for d in sent:
        q1.complete(d, 4096, t)
    q1.dispatch(t)  # shard 1 publishes its in-disk cost when it next syncs
    assert len(q0.dispatch(t)) == 1
