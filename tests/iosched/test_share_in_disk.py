"""IoQueueConfig.share_in_disk: while two or more classes are busy, each may put at most its part
of the in-disk bound (bound x shares / the busy classes' shares) in the disk; a class within its
part keeps its direct grants while the others wait (issue 17).

The queue's books first, then the simulated engine: a disk faster than the calibrated rate lets
the engine, not the token bucket, be the bottleneck; requests through the queue cost the engine
more than granted ones (``Engine.cpu_per_queued``: the reactor's Python path against its C
grant path). Virtual time, deterministic.
"""
from __future__ import annotations

import math

import pytest
from test_knee import FAST

from iosched import READ, WRITE, IoQueue, IoQueueConfig
from iosched.sim import Engine, Workload, scaled_properties, simulate

C4K = 1 / 100_000  # a 4 KiB read on FAST (max form: the IOPS term)
TEN = 10 * C4K / 0.00075  # in_disk_limit (in latency goals of 0.75 ms) for a bound of 10 reads


def queue(share: bool = True) -> IoQueue:
    q = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, in_disk_limit=TEN, adaptive_in_disk=False,
                                    share_in_disk=share))
    q.create_class("hi", 400)
    q.create_class("lo", 100)
    return q


def offer(q: IoQueue, name: str, n: int, now: float = 0.0) -> None:
    for i in range(n):
        q.queue(q.get_class(name), READ, 4096, (name, i), now)


def by_class(batch) -> dict[str, int]:
    out = {"hi": 0, "lo": 0}
    for d in batch:
        out[d.io_class.name] += 1
    return out


def test_busy_classes_fill_their_parts_and_no_more():
    q = queue()
    offer(q, "hi", 20)
    offer(q, "lo", 20)
    first = q.dispatch(0.001)
    assert by_class(first) == {"hi": 8, "lo": 2}  # the bound of 10, split 400:100
    assert q.get_class("lo").in_disk_cost == pytest.approx(2 * C4K)
    assert q.dispatch(0.002) == []  # both at their parts: only completions make room
    # a completion of the small class makes room in its part only
    lo = next(d for d in first if d.io_class.name == "lo")
    q.complete(lo, 4096, 0.003)
    assert by_class(q.dispatch(0.003)) == {"hi": 0, "lo": 1}
    hi = [d for d in first if d.io_class.name == "hi"][:3]
    for d in hi:
        q.complete(d, 4096, 0.004)
    assert by_class(q.dispatch(0.004)) == {"hi": 3, "lo": 0}


def test_when_every_waiting_class_is_over_its_part_only_a_completion_wakes_dispatch():
    """next_dispatch_time: the engine dispatches again when it says so, so while the classes
    that wait are all held by their parts it answers inf whatever the tokens and the disk's
    room (the reactor then skips dispatching on every loop turn), and ``now`` again once a
    completion makes room. (The bound the classes split is half the disk's.)"""
    q = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, in_disk_limit=2 * TEN, adaptive_in_disk=False,
                                    share_in_disk=True, share_in_disk_limit=TEN, share_follow_demand=1.0))
    q.create_class("hi", 400)
    q.create_class("lo", 100)
    offer(q, "hi", 20)
    offer(q, "lo", 20)
    first = q.dispatch(0.001)
    assert q.dispatch(0.002) == []
    assert q.next_dispatch_time(0.002) == math.inf  # tokens would allow it: the parts do not
    lo = next(d for d in first if d.io_class.name == "lo")
    q.complete(lo, 4096, 0.003)
    assert q.next_dispatch_time(0.003) == 0.003  # room in the small class's part
    assert by_class(q.dispatch(0.003)) == {"hi": 0, "lo": 1}
    assert q.next_dispatch_time(0.003) == math.inf
    hi = next(d for d in first if d.io_class.name == "hi")
    q.complete(hi, 4096, 0.004)
    assert q.next_dispatch_time(0.004) == 0.004
    assert by_class(q.dispatch(0.004)) == {"hi": 1, "lo": 0}


@pytest.mark.parametrize("hold", [True, False], ids=["share_hold", "work_conserving"])
def test_a_class_with_nothing_in_the_disk_sends_a_request_larger_than_its_part(hold):
    """A class of large writes next to one with 10x its shares: its part of the bound is less
    than one write. With nothing of its own in the disk it may still send one (the parts bound
    what a class keeps there, they must not stall it), even while the other fills its part.
    Its next waits, with share_hold, until the reader (held by its full part, its accumulator
    behind) has had its share of the disk; without, it goes as soon as the first completes."""
    q = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, in_disk_limit=TEN, adaptive_in_disk=False,
                                    share_in_disk=True, share_hold=hold))
    reader = q.create_class("reader", 1000)
    writer = q.create_class("writer", 100)
    offer(q, "reader", 20)
    first = q.dispatch(0.001)
    assert len(first) == 10  # alone, the reader fills the bound (its part would be 9.1 reads)
    q.queue(writer, WRITE, 128 << 10, "w0", 0.001)
    q.queue(writer, WRITE, 128 << 10, "w1", 0.001)
    w = q.dispatch(0.002)
    assert [d.io_class.name for d in w] == ["writer"]  # one, not both: then its part is taken
    assert w[0].cost > TEN * 0.00075 * 100 / 1100  # larger than its whole part
    assert q.dispatch(0.003) == []
    q.complete(w[0], 128 << 10, 0.004)
    if not hold:
        assert [d.io_class.name for d in q.dispatch(0.004)] == ["writer"]
        return
    assert q.dispatch(0.004) == []  # the reader, parked at its part, is behind: not the writer's turn
    assert q.next_dispatch_time(0.004) == math.inf  # only a completion can change that
    in_disk = [d for d in first]
    now = 0.004
    for _ in range(1000):  # the reader's completions let it go on, until it has caught up
        now += 0.0001
        q.complete(in_disk.pop(0), 4096, now)
        offer(q, "reader", 1, now)
        got = q.dispatch(now)
        if any(d.io_class is writer for d in got):
            break
        in_disk += got
    else:
        raise AssertionError("the writer never went again")
    # by then the reader had its share of the disk next to the writer's first write
    assert reader.consumption / reader.shares >= w[0].cost / writer.shares * 0.99


def test_busy_classes_split_the_smaller_share_limit_and_a_lone_class_keeps_the_bound():
    # share_in_disk_limit: two busy classes split 10 reads' worth; a class alone has 30
    q = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, in_disk_limit=3 * TEN, adaptive_in_disk=False,
                                    share_in_disk=True, share_in_disk_limit=TEN))
    q.create_class("hi", 400)
    q.create_class("lo", 100)
    offer(q, "lo", 40)
    assert by_class(q.dispatch(0.001)) == {"hi": 0, "lo": 30}  # alone: the whole bound
    q2 = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, in_disk_limit=3 * TEN, adaptive_in_disk=False,
                                     share_in_disk=True, share_in_disk_limit=TEN))
    q2.create_class("hi", 400)
    q2.create_class("lo", 100)
    offer(q2, "hi", 20)
    offer(q2, "lo", 20)
    assert by_class(q2.dispatch(0.001)) == {"hi": 8, "lo": 2}  # busy together: the smaller bound, 400:100
    # a larger share limit than the bound changes nothing: the bound is split
    q3 = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, in_disk_limit=TEN, adaptive_in_disk=False,
                                     share_in_disk=True, share_in_disk_limit=3 * TEN))
    q3.create_class("hi", 400)
    q3.create_class("lo", 100)
    offer(q3, "hi", 20)
    offer(q3, "lo", 20)
    assert by_class(q3.dispatch(0.001)) == {"hi": 8, "lo": 2}
    for bad in (0, -1.0, float("inf"), True, "1"):
        with pytest.raises(ValueError, match="share_in_disk_limit"):
            IoQueueConfig(share_in_disk_limit=bad)


def test_a_class_within_its_part_gets_a_grant_while_the_other_waits():
    q = queue()
    offer(q, "lo", 20)
    assert by_class(q.dispatch(0.001)) == {"hi": 0, "lo": 10}  # alone, the small class has the whole bound
    hi = q.get_class("hi")
    g = q.open_grant(hi, 0.002)
    # lo waits (18 more queued) but is over its part: hi may fill its own 8, nothing beyond
    assert g is not None and g.budget == pytest.approx(8 * C4K, rel=1e-6)
    n = 0
    while g.take(READ, 4096):
        n += 1
    assert n == 8
    q.commit_grant(g)
    assert hi.in_disk_cost == pytest.approx(8 * C4K)
    assert q.open_grant(q.get_class("lo"), 0.002) is None  # it has work queued: the queue's order
    assert q.open_grant(hi, 0.002) is None  # its part is full


def test_completions_give_a_grant_held_by_its_part_its_room_back():
    """IoQueue.refill_grant: a grant held by the class's part of the disk (not the tokens) may
    take again the room its class's completed requests held, within the tokens it was opened
    with, before the completions are booked; the books stay those of what was taken."""
    q = queue()
    offer(q, "lo", 20)
    q.dispatch(0.001)
    hi, lo = q.get_class("hi"), q.get_class("lo")
    g = q.open_grant(hi, 0.002)
    assert g.budget == pytest.approx(8 * C4K, rel=1e-6) and g.refill > 8 * C4K  # room-bound
    while g.take(READ, 4096):
        pass
    q.commit_grant(g)
    assert q.open_grant(hi, 0.002) is None  # its part is full; lo's completions give it nothing
    g2 = q.open_grant(hi, 0.002, empty_ok=True)  # ... but its own will
    assert g2.budget == 0.0 and g2.refill > 0.0
    assert q.open_grant(lo, 0.002, empty_ok=True) is None  # it has work queued
    assert q.refill_grant(g2, g, 3) == pytest.approx(3 * C4K)  # three of the first grant's 8 are done
    n = 0
    while g2.take(READ, 4096):
        n += 1
    assert n == 3
    q.complete_grant(g, 3, 0.003)
    q.commit_grant(g2)
    assert hi.nr_executing == 8 and hi.in_disk_cost == pytest.approx(8 * C4K)  # still its part
    q.complete_grant(g, 5, 0.004)
    q.complete_grant(g2, 3, 0.004)
    assert hi.nr_executing == 0 and hi.in_disk_cost == pytest.approx(0.0, abs=1e-12)
    # the tokens bound it: a refill never gives more than the grant was opened with beyond its room
    g3 = q.open_grant(hi, 0.005)
    g3.refill = C4K
    g4 = q.open_grant(lo, 0.005)
    assert g4 is None
    taken = 0
    while g3.take(READ, 4096):
        taken += 1
    assert q.refill_grant(g3, g3, taken) == pytest.approx(C4K)
    assert g3.refill == 0.0 and q.refill_grant(g3, g3, 1) == 0.0
    # a committed grant takes nothing back
    q.commit_grant(g3)
    assert q.refill_grant(g3, g3, 1) == 0.0


def test_without_it_a_waiting_class_queues_everyone():
    q = queue(share=False)
    offer(q, "lo", 20)
    q.dispatch(0.001)
    assert q.open_grant(q.get_class("hi"), 0.002) is None


def test_a_class_alone_has_the_whole_bound():
    q = queue()
    offer(q, "hi", 20)
    assert by_class(q.dispatch(0.001)) == {"hi": 10, "lo": 0}


def test_the_books_balance():
    q = queue()
    offer(q, "hi", 30)
    offer(q, "lo", 30)
    t = 0.001
    while q.queued or q.in_disk:
        for d in q.dispatch(t):
            q.complete(d, 4096, t + 0.0001)
        t += 0.001
    for name in ("hi", "lo"):
        c = q.get_class(name)
        assert c.nr_executing == 0 and c.in_disk_cost == pytest.approx(0.0, abs=1e-12)
    assert q.in_disk_cost == pytest.approx(0.0, abs=1e-12)


def test_a_class_that_leaves_its_part_unused_lends_it():
    q = queue()
    hi, lo = q.get_class("hi"), q.get_class("lo")
    offer(q, "hi", 2)  # the large class wants 2 of its part of 8
    offer(q, "lo", 20)
    # 8 - 1.25 x 2 = 5.5 reads of hi's part are lent: lo takes its 2 and 5 more
    assert by_class(q.dispatch(0.001)) == {"hi": 2, "lo": 7}
    # while hi keeps its part busy, it lends nothing
    q2 = queue()
    offer(q2, "hi", 20)
    offer(q2, "lo", 20)
    assert by_class(q2.dispatch(0.001)) == {"hi": 8, "lo": 2}
    # the books behind it: hi's peak demand, lo's borrowed requests in the disk
    assert hi.peak_demand == pytest.approx(2 * C4K) and lo.in_disk_cost == pytest.approx(7 * C4K)


def test_the_option_is_checked():
    with pytest.raises(ValueError, match="share_in_disk"):
        IoQueueConfig(share_in_disk=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="share_lend_headroom"):
        IoQueueConfig(share_lend_headroom=0)


# -- the simulated engine ---------------------------------------------------------------------

# ~100k requests/s at most, the queued path 5 us dearer: the shape of the reactor on this
# virtio disk (a 32-way parallel disk, whose latency grows with depth beyond 32)
ENGINE = Engine(cpu_per_request=5e-6, cpu_per_completion=2e-6, cpu_per_turn=5e-6, cpu_per_queued=5e-6)


def run(share, limit, *, sched_props="same", depth=(32, 32), follow=None, shares=(400, 100)):
    extra = {} if follow is None else {"share_follow_demand": follow}
    cfg = IoQueueConfig(bound_in_disk=True, in_disk_limit=limit, adaptive_in_disk=False, share_in_disk=share,
                        **extra)
    r = simulate([Workload("hi", shares[0], depth=depth[0]), Workload("lo", shares[1], depth=depth[1])],
                 disk_props=FAST,
                 sched_props=sched_props, duration=0.6, config=cfg, engine=ENGINE, noise=0.2, seed=1,
                 parallelism=32)
    rep = r.report(0.3)
    return rep["hi"].iops, rep["lo"].iops


@pytest.mark.parametrize("limit", [0.5, 0.55])
def test_engine_bound_shares_hold_near_the_knee(limit):
    """The bound near the depth where the disk stops going faster (in goals: ~40 reads of 75):
    with the parts, 4:1 (the large class on grants, the small one's excess out of the disk);
    the same bound without them lets the small class keep up, as it holds everyone in the
    queue and the engine's time goes to the queued path."""
    hi, lo = run(True, limit)
    assert hi / lo == pytest.approx(4.0, rel=0.07)
    hi0, lo0 = run(False, limit)
    assert hi0 / lo0 < 3.0
    assert hi + lo >= 0.98 * (hi0 + lo0)


@pytest.mark.parametrize("limit", [0.7, 0.85, 1.0, 2.0])
def test_above_the_knee_the_parts_follow_the_large_class_demand(limit):
    """A bound above what the classes offer together (the calibration above what the engine
    pushes), up to twice what they offer: the large class cannot fill its part, its tasks held
    by the engine. Its demand sizes the bound the classes split, so the small class's part
    shrinks with it and 4:1 holds as at the knee; with the parts following the bound alone the
    small class keeps up. The price is the knee's: what the small class gives up the
    engine-bound large class cannot take (the same total as with the bound at the knee)."""
    hi, lo = run(True, limit)
    assert hi / lo == pytest.approx(4.0, rel=0.03)
    hi1, lo1 = run(True, limit, follow=1.0)
    assert hi1 / lo1 < 3.0
    knee_hi, knee_lo = run(True, 0.55)
    assert hi + lo >= 0.98 * (knee_hi + knee_lo)


def test_the_others_parts_follow_what_each_class_got():
    """Parts in proportion to the large class's peak leave the small class more than its share
    (the large class's tasks are not all in the disk at once, parts are whole requests): the
    correction from each window's consumption brings the ratio to 4, where the parts alone
    give less."""
    for limit in (0.55, 0.85):
        hi, lo = run(True, limit)
        assert hi / lo == pytest.approx(4.0, rel=0.02)


@pytest.mark.parametrize("limit", [0.55, 0.85, 2.0])
def test_a_part_under_one_request_is_held_to_its_share(limit):
    """1 % of the shares: the small class's part is a fraction of one read, and one request may
    always go to a class with nothing in the disk, which alone gave it ~3x its entitlement.
    While it has had more than its share, it waits with nothing in the disk: in the disk part
    of the time, as its part is."""
    hi, lo = run(True, limit, shares=(990, 10))
    assert lo / (hi + lo) / 0.01 == pytest.approx(1.0, abs=0.15)


def test_demand_following_is_checked():
    for bad in (0, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="share_follow_demand"):
            IoQueueConfig(share_follow_demand=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [(4, 32), (8, 32)])
def test_a_class_with_few_requests_lends_its_part(depth):
    """The large class keeps fewer requests outstanding than its part: what it does not use
    goes to the other, so the disk is not left idle (the throughput of the bound alone)."""
    hi, lo = run(True, 0.55, depth=depth)
    hi0, lo0 = run(False, 0.55, depth=depth)
    assert hi + lo >= 0.95 * (hi0 + lo0)


def test_disk_bound_shares_are_unchanged():
    half = scaled_properties(FAST, 0.5)
    for share in (False, True):
        hi, lo = run(share, 0.55, sched_props=half)
        assert hi / lo == pytest.approx(4.0, rel=0.02)
        assert hi + lo == pytest.approx(half.read_iops, rel=0.1)


def run_paced(rate, *, follow=None):
    """A paced class (10x the shares, an open loop at ``rate``) next to a backlogged one."""
    extra = {} if follow is None else {"share_follow_demand": follow}
    cfg = IoQueueConfig(bound_in_disk=True, in_disk_limit=0.85, adaptive_in_disk=False, share_in_disk=True, **extra)
    r = simulate([Workload("paced", 1000, rate=rate, depth=64), Workload("bulk", 100, depth=32)], disk_props=FAST,
                 sched_props="same", duration=0.6, config=cfg, engine=ENGINE, noise=0.2, seed=1, parallelism=32)
    rep = r.report(0.3)
    return rep["paced"].iops, rep["bulk"].iops


@pytest.mark.parametrize("rate", [20_000, 40_000])
def test_a_paced_class_does_not_size_the_others_parts(rate):
    """A class whose requests come on its own clock (an open loop: a paced reader) gains
    nothing from the others being held back: its demand does not size their parts, so the
    backlogged class with a tenth of its shares gets what the paced class leaves (as with
    no demand-following at all), not a tenth of what the paced class takes; the paced class
    still gets its rate."""
    paced, bulk = run_paced(rate)
    paced1, bulk1 = run_paced(rate, follow=1.0)
    assert paced >= 0.97 * rate
    assert bulk >= 0.9 * bulk1
    assert bulk > paced / 10 * 1.5
