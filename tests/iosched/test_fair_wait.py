"""IoQueueConfig.fair_wait_fraction: while two classes are busy, part of what they offer waits in
the fair queue, so shares decide who goes (and whose tasks get the engine) when the engine, not
the disk, is the bottleneck. Simulated engine core and disk, virtual time (issue 17)."""
from __future__ import annotations

import pytest
from test_knee import ENGINE, FAST

from iosched import IoQueueConfig
from iosched.sim import Workload, scaled_properties, simulate


def run(workloads, wf, *, parallelism=1, sched_props="same"):
    cfg = IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0, adaptive_in_disk=False, fair_wait_fraction=wf)
    r = simulate(workloads, disk_props=FAST, sched_props=sched_props, duration=0.6, config=cfg, engine=ENGINE,
                 noise=0.2, seed=1, parallelism=parallelism)
    return {k: v.iops for k, v in r.report(0.3).items()}


def two():
    return [Workload("hi", 400, depth=32), Workload("lo", 100, depth=32)]


@pytest.mark.parametrize("parallelism", [1, 32])
def test_engine_bound_shares_hold_with_part_of_the_load_waiting(parallelism):
    off = run(two(), 0.0, parallelism=parallelism)
    on = run(two(), 0.5, parallelism=parallelism)
    assert off["hi"] / off["lo"] == pytest.approx(1.0, rel=0.05)  # issue 17: 1:1
    assert on["hi"] / on["lo"] == pytest.approx(4.0, rel=0.05)
    # the simulated engine stays the bottleneck: little throughput is lost
    assert on["hi"] + on["lo"] > 0.9 * (off["hi"] + off["lo"])


def test_a_class_alone_is_not_held_back():
    alone = [Workload("hi", 400, depth=32)]
    assert run(alone, 0.5)["hi"] == pytest.approx(run(alone, 0.0)["hi"], rel=0.01)


def test_disk_bound_shares_are_unchanged():
    half = scaled_properties(FAST, 0.5)
    for wf in (0.0, 0.5):
        got = run(two(), wf, sched_props=half)
        assert got["hi"] / got["lo"] == pytest.approx(4.0, rel=0.02)
        assert got["hi"] + got["lo"] == pytest.approx(half.read_iops, rel=0.02)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "0.5", None])
def test_fraction_is_checked(bad):
    with pytest.raises(ValueError, match="fair_wait_fraction"):
        IoQueueConfig(fair_wait_fraction=bad)


