"""iosched.WakeupQueue: the engine's loop shared by io class when the engine, not the disk, is
the bottleneck (issue 17). The queue alone, then on the simulator with an engine core slower
than the disk (virtual time); the reactor's use of it is tested with real I/O in
tests/foundation/test_wakeup_budget.py."""
from __future__ import annotations

from dataclasses import replace

import pytest
from test_knee import ENGINE, FAST

from iosched import IoQueueConfig, WakeupQueue
from iosched.sim import Engine, Workload, scaled_properties, simulate


def taken(wq: WakeupQueue) -> list:
    out: list = []
    wq.take(out)
    return out


def test_a_class_alone_is_woken_at_once_whatever_the_budget():
    wq = WakeupQueue(2)
    for i in range(10):
        wq.push("a", 100, i)
    assert taken(wq) == list(range(10))
    assert wq.pending == 0 and taken(wq) == []


def test_competing_classes_are_woken_by_shares_within_the_budget():
    wq = WakeupQueue(5)
    for i in range(20):
        wq.push("hi", 400, ("hi", i))
        wq.push("lo", 100, ("lo", i))
    got: list = []
    while wq.pending:
        turn = taken(wq)
        assert len(turn) <= 5 or {k for k, _ in turn} == {"hi"} or {k for k, _ in turn} == {"lo"}
        got += turn
    first = [k for k, _ in got[:25]]
    assert first.count("hi") == 20 and first.count("lo") == 5  # 4:1 while both wait
    for k in ("hi", "lo"):  # each class in its own order
        assert [i for c, i in got if c == k] == list(range(20))


def test_a_class_back_from_idle_gets_no_credit_for_it():
    wq = WakeupQueue(4)
    for i in range(40):  # "hi" alone for a while: its virtual time runs ahead
        wq.push("hi", 100, i)
    taken(wq)
    for i in range(8):
        wq.push("hi", 100, ("hi", i))
    for i in range(8):
        wq.push("new", 100, ("new", i))
    turn = taken(wq)
    # "new" starts level with the class that waits (they alternate), not 40 wake-ups behind it
    # (it would have the whole turn)
    assert sorted(k for k, _ in turn) == ["hi", "hi", "new", "new"]


def test_budget_is_checked():
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="budget"):
            WakeupQueue(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wakeup_budget"):
        Engine(wakeup_budget=-1)


def run(workloads, budget, *, sched_props="same", parallelism=1):
    cfg = IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0, adaptive_in_disk=False)
    r = simulate(workloads, disk_props=FAST, sched_props=sched_props, duration=0.6, config=cfg,
                 engine=replace(ENGINE, wakeup_budget=budget), noise=0.2, seed=1, parallelism=parallelism)
    return {k: v.iops for k, v in r.report(0.3).items()}


def two(depth=32):
    return [Workload("hi", 400, depth=depth), Workload("lo", 100, depth=depth)]


@pytest.mark.parametrize("parallelism", [1, 32])
def test_engine_bound_shares_hold_when_the_loop_is_shared(parallelism):
    off = run(two(), 0, parallelism=parallelism)
    on = run(two(), 4, parallelism=parallelism)
    assert off["hi"] / off["lo"] == pytest.approx(1.0, rel=0.05)  # the engine shared equally: 1:1
    assert on["hi"] / on["lo"] == pytest.approx(4.0, rel=0.05)
    assert on["hi"] + on["lo"] > 0.85 * (off["hi"] + off["lo"])  # the engine stays busy


def test_a_class_alone_is_not_held_back():
    alone = [Workload("hi", 400, depth=32)]
    assert run(alone, 4)["hi"] == pytest.approx(run(alone, 0)["hi"], rel=0.001)


def test_disk_bound_shares_are_unchanged():
    half = scaled_properties(FAST, 0.5)
    for budget in (0, 4):
        got = run(two(), budget, sched_props=half)
        assert got["hi"] / got["lo"] == pytest.approx(4.0, rel=0.02)
        assert got["hi"] + got["lo"] == pytest.approx(half.read_iops, rel=0.02)


def test_charge_books_what_went_at_once_like_push_and_take():
    a, b = WakeupQueue(3), WakeupQueue(3)
    for i in range(7):
        a.push("x", 200, i)
    taken(a)
    b.charge("x", 200, 7)
    for q in (a, b):
        q.push("y", 100, "y0")
        taken(q)  # y alone: 0.01 of virtual time, x has 0.035
        for i in range(6):
            q.push("y", 100, ("y", i))
        for i in range(6):
            q.push("x", 200, ("x", i))
    first = taken(b)
    assert first == taken(a)
    assert [k for k, _ in first] == ["y", "y", "y"]  # x's wake-ups that went at once count


def test_engine_stalls_take_the_core_away():
    """Engine(stalls=(period, length)): the core is preempted for ``length`` every ``period``,
    as a shared machine does to the reactor (what the 1 % class's bursts on the real disk need;
    iosched/README.md)."""
    alone = [Workload("only", 400, depth=32)]
    cfg = IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0, adaptive_in_disk=False)

    def iops(stalls):
        r = simulate(alone, disk_props=FAST, sched_props="same", duration=0.6, config=cfg,
                     engine=replace(ENGINE, stalls=stalls), noise=0.2, seed=1)
        return r.report(0.2)["only"].iops

    assert iops((0.01, 0.002)) == pytest.approx(0.8 * iops(None), rel=0.05)  # engine-bound: 20 % of the core gone
    for bad in ((0.01, 0.0), (0.001, 0.002), (0.01, -1.0)):
        with pytest.raises(ValueError, match="stalls"):
            Engine(stalls=bad)
