"""IoQueue without a simulated disk: ordering, tokens, splitting, cancel, classes, metrics."""

from __future__ import annotations

import math

import pytest

from iosched import READ, WRITE, DiskProperties, IoQueue, IoQueueConfig
from iosched.cost import CostModel

DISK = DiskProperties(("/d",), read_iops=100_000, read_bandwidth=1_000_000_000,
                      write_iops=50_000, write_bandwidth=500_000_000)


def drain(q: IoQueue, now: float = 0.0, result=None):
    """Dispatch everything (advancing time as tokens require) and complete it."""
    done = []
    t = now
    while True:
        ds = q.dispatch(t)
        for d in ds:
            r = q.complete(d, d.length if result is None else result(d), t)
            if r is not None:
                done.append(r)
        nt = q.next_dispatch_time(t)
        if nt is None:
            return done
        t = max(nt, t + 1e-9)


# -- no properties: fair order, never throttled ----------------------------------------

def test_no_properties_never_throttles_or_splits():
    q = IoQueue(None)
    a = q.create_class("a", 100)
    reqs = [q.queue(a, READ, 64 << 20, i, 0.0, alignment=512 * (1 + i % 3)) for i in range(100)]
    assert all(r.parts is None for r in reqs)  # nothing is split
    ds = q.dispatch(0.0)
    assert [d.payload for d in ds] == list(range(100))  # all at once, FIFO within a class
    assert q.next_dispatch_time(0.0) is None
    assert q.capacity == math.inf and q.cost_scale == 1.0


def test_no_properties_orders_fairly_in_bounded_batches():
    q = IoQueue(None)
    a, b = q.create_class("a", 300), q.create_class("b", 100)
    for _ in range(400):
        q.queue(a, READ, 4096, "a", 0.0)
        q.queue(b, READ, 4096, "b", 0.0)
    first = q.dispatch(0.0, max_requests=200)
    assert len(first) == 200
    assert sum(d.payload == "a" for d in first) == pytest.approx(150, abs=1)
    # nominal costs weigh bytes too: a 1 MiB read counts like many 4 KiB ones
    q2 = IoQueue(None)
    big, small = q2.create_class("big", 100), q2.create_class("small", 100)
    for _ in range(50):
        q2.queue(big, READ, 1 << 20, "big", 0.0)
    for _ in range(5000):
        q2.queue(small, READ, 4096, "small", 0.0)
    batch = q2.dispatch(0.0, max_requests=1000)
    nbig = sum(d.payload == "big" for d in batch)
    assert 1 <= nbig <= 10  # ~1 MiB of 1 MiB reads per ~1 MiB/4 KiB*... of small ones


# -- the token bucket --------------------------------------------------------------------

def test_dispatch_stays_within_tokens_and_says_when_to_come_back():
    q = IoQueue(DISK)
    cm = CostModel(DISK)
    for _ in range(1000):
        q.queue("default", READ, 4096, None, 0.0)
    first = q.dispatch(0.0)
    spent = sum(cm.cost(READ, 4096) for _ in first)
    assert spent <= q.capacity + 1e-12
    assert len(first) == int(q.capacity / cm.cost(READ, 4096) + 1e-9)  # 75 of 10 us in 0.75 ms
    assert q.dispatch(0.0) == []
    t = q.next_dispatch_time(0.0)
    assert t == pytest.approx(cm.cost(READ, 4096), rel=1e-6)
    assert len(q.dispatch(t + 1e-9)) == 1
    # over a long run the dispatch rate is the disk's rate: 100k reads/s (with a disk
    # that completes everything at once, so the flow ratio sees no backlog)
    for d in first:
        q.complete(d, 4096, t)
    n, now = 0, t
    while now < 0.005:
        now = q.next_dispatch_time(now) + 1e-9
        for d in q.dispatch(now):
            q.complete(d, 4096, now)
            n += 1
    assert n / (now - t) == pytest.approx(100_000, rel=0.01)
    assert q.cost_scale == 1.0


def test_a_disk_that_does_not_complete_gets_less():
    q = IoQueue(DISK)
    for _ in range(2000):
        q.queue("default", READ, 4096, None, 0.0)
    n, now = 0, 0.0
    while now < 0.01:
        n += len(q.dispatch(now))
        now = q.next_dispatch_time(now) + 1e-9
    assert q.flow_ratio > 1.1 and q.cost_scale > 2
    assert n < 0.7 * 100_000 * 0.01


def test_capacity_is_latency_goal_but_fits_a_few_requests_on_slow_disks():
    assert IoQueue(DISK).capacity == pytest.approx(0.00075)
    assert IoQueue(DISK, IoQueueConfig(latency_goal_ms=2.0)).capacity == pytest.approx(0.002)
    hdd = DiskProperties(("/hdd",), 200, 200e6, 150, 180e6)
    assert IoQueue(hdd).capacity == pytest.approx(4 / 150)  # four 4 KiB writes
    # rate_factor scales the refill (and so the bucket, in unscaled cost units)
    fast = DiskProperties(("/d",), 100_000, 1e9, 50_000, 5e8, rate_factor=2.0)
    assert IoQueue(fast).capacity == pytest.approx(0.0015)


def test_head_of_line_blocks_rather_than_letting_small_requests_past():
    q = IoQueue(DISK)
    big, small = q.create_class("big", 100), q.create_class("small", 100)
    q.queue(big, READ, 600_000, "big", 0.0)  # 0.6 ms: fits, leaves 0.15 ms of tokens
    q.queue(big, READ, 600_000, "big2", 0.0)
    for _ in range(10):
        q.queue(small, READ, 4096, "small", 0.0)
    ds = q.dispatch(0.0)
    names = [d.payload for d in ds]
    assert names[0] == "big"
    # the big class is at the head again only after "small" caught up; it then waits
    assert "big2" not in names
    assert q.next_dispatch_time(0.0) > 0.0


# -- splitting ---------------------------------------------------------------------------

def test_split_covers_request_with_aligned_parts():
    q = IoQueue(DISK)
    max_read, max_write = q.max_request_length
    assert max_read % 4096 == 0 and max_read <= 0.00075 * 1e9
    assert CostModel(DISK).cost(READ, max_read) <= q.capacity
    length = 5 * max_read + 12345
    req = q.queue("default", READ, length, "p", 0.0)
    parts = req.parts
    assert parts is not None and len(parts) == 6
    assert [p.offset for p in parts] == [i * max_read for i in range(6)]
    assert all(p.length % 4096 == 0 for p in parts[:-1])
    assert sum(p.length for p in parts) == length
    for a, b in zip(parts, parts[1:]):
        assert a.offset + a.length == b.offset  # no gap, no overlap
    assert all(p.request is req and p.payload == "p" for p in parts)
    assert req.request is req
    m = q.metrics()["classes"]["default"]
    assert m["split_ops"] == 1 and m["split_bytes"] == length and m["queue_length"] == 6


def test_split_reassembles_in_any_completion_order():
    q = IoQueue(DISK)
    req = q.queue("default", WRITE, 3 << 20, None, 0.0)
    got = []
    t = 0.0
    while len(got) < len(req.parts):
        got += q.dispatch(t)
        t += 0.001
    assert {d.offset for d in got} == {p.offset for p in req.parts}
    results = [q.complete(d, d.length, t) for d in reversed(got)]
    assert results[:-1] == [None] * (len(got) - 1)
    assert results[-1] is req and req.result == 3 << 20 and req.done


def _split_result(part_results):
    q = IoQueue(DISK)
    n = q.max_request_length[READ]
    req = q.queue("default", READ, n * len(part_results), None, 0.0)
    by_offset = {p.offset: r for p, r in zip(req.parts, part_results)}
    def result(d):
        r = by_offset[d.offset]
        return r(d.length) if callable(r) else r

    done = drain(q, result=result)
    assert done == [req]
    return req.result, n


def test_split_short_part_ends_the_sum():
    full = lambda n: n  # noqa: E731
    res, n = _split_result([full, 1000, full])
    assert res == n + 1000  # the third part's bytes follow a hole: not counted
    res, n = _split_result([full, full, 0])
    assert res == 2 * n


def test_split_error_in_any_part_is_the_result():
    full = lambda n: n  # noqa: E731
    res, _ = _split_result([full, full, -5])
    assert res == -5
    res, _ = _split_result([full, 100, -28])  # even after a short part: never swallowed
    assert res == -28
    res, _ = _split_result([-9, -5, full])
    assert res == -9  # the first error by offset


def test_saturation_length_and_alignment_bound_parts():
    props = DiskProperties(("/d",), 100_000, 1e9, 50_000, 5e8, read_saturation_length=128 << 10)
    q = IoQueue(props)
    assert q.max_request_length[READ] == 128 << 10
    req = q.queue("default", READ, 1 << 20, None, 0.0)
    assert [p.length for p in req.parts] == [128 << 10] * 8
    # an alignment that does not divide the limit: parts are multiples of it
    q2 = IoQueue(props, IoQueueConfig(split_alignment=512))
    req2 = q2.queue("default", READ, 1 << 20, None, 0.0, alignment=3 * 4096)
    assert all(p.length % (3 * 4096) == 0 for p in req2.parts[:-1])
    assert sum(p.length for p in req2.parts) == 1 << 20


# -- cancel ------------------------------------------------------------------------------

def test_cancel():
    q = IoQueue(DISK)
    a = q.create_class("a", 100)
    reqs = [q.queue(a, READ, 4096, i, 0.0) for i in range(200)]
    assert q.cancel(reqs[150])
    assert not q.cancel(reqs[150])  # already gone
    ds = q.dispatch(0.0)
    assert not q.cancel(ds[0].request)  # dispatched
    rest = drain(q)
    assert 150 not in {r.payload for r in rest} and len(rest) + len(ds) == 199
    # a split request with a part already in the disk cannot be cancelled
    big = q.queue(a, READ, 10 << 20, "big", 1.0)
    assert q.dispatch(1.0)
    assert not q.cancel(big)
    # a fully queued split request can
    q2 = IoQueue(DISK)
    q2.queue("default", READ, 4096, None, 0.0)
    for _ in range(100):
        q2.queue("default", READ, 4096, None, 0.0)
    big2 = q2.queue("default", READ, 10 << 20, None, 0.0)
    assert q2.cancel(big2)
    assert q2.metrics()["classes"]["default"]["queue_length"] == 101
    # cancelling the last request of a class takes it out of the fair queue
    q3 = IoQueue(DISK)
    r = q3.queue("default", READ, 4096, None, 0.0)
    assert q3.cancel(r)
    assert q3.dispatch(0.0) == [] and q3.next_dispatch_time(0.0) is None


# -- classes at runtime ------------------------------------------------------------------

def test_create_rename_reshare_remove():
    q = IoQueue(DISK)
    assert set(q.classes) == {"default"}
    assert q.get_class("default").shares == 1000.0
    c = q.create_class("compaction", 0.5)  # any positive number
    with pytest.raises(ValueError, match="already exists"):
        q.create_class("compaction", 1)
    for bad in (0, -1, math.inf, math.nan, "10", True):
        with pytest.raises(ValueError, match="shares"):
            q.create_class(f"bad{bad!r}", bad)
    q.rename_class("compaction", "bg")
    assert q.get_class("bg") is c and c.name == "bg"
    with pytest.raises(KeyError, match="compaction"):
        q.get_class("compaction")
    with pytest.raises(ValueError, match="taken"):
        q.rename_class("bg", "default")
    q.queue("bg", READ, 4096, None, 0.0)  # by name
    q.set_shares("bg", 250)
    assert c.shares == 250
    with pytest.raises(ValueError, match="queued"):
        q.remove_class("bg")
    (d,) = q.dispatch(0.0)
    q.remove_class("bg")  # only in flight: allowed
    assert q.complete(d, 4096, 0.001) is d  # its completion is still accepted
    assert "bg" not in q.classes
    with pytest.raises(ValueError, match="does not belong"):
        q.queue(c, READ, 4096, None, 0.0)
    with pytest.raises(KeyError):
        q.queue("bg", READ, 4096, None, 0.0)
    with pytest.raises(ValueError, match="direction"):
        q.queue("default", 2, 4096, None, 0.0)
    with pytest.raises(ValueError, match="length"):
        q.queue("default", READ, -1, None, 0.0)
    with pytest.raises(ValueError, match="alignment"):
        q.queue("default", READ, 4096, None, 0.0, alignment=0)
    other = IoQueue(DISK).create_class("x", 1)
    with pytest.raises(ValueError, match="does not belong"):
        q.queue(other, READ, 4096, None, 0.0)


def test_reshare_takes_effect():
    q = IoQueue(None)
    a, b = q.create_class("a", 100), q.create_class("b", 100)
    for _ in range(2000):
        q.queue(a, READ, 4096, "a", 0.0)
        q.queue(b, READ, 4096, "b", 0.0)
    assert sum(d.payload == "a" for d in q.dispatch(0.0, 200)) == pytest.approx(100, abs=1)
    q.set_shares("a", 400)
    assert sum(d.payload == "a" for d in q.dispatch(0.0, 500)) == pytest.approx(400, abs=2)


def test_waking_class_gets_bounded_forgiveness():
    cfg = IoQueueConfig(forgiveness_ms=1.0)
    q = IoQueue(None, cfg)
    a, b = q.create_class("a", 100), q.create_class("b", 100)
    for _ in range(50_000):
        q.queue(a, READ, 4096, "a", 0.0)
    for d in q.dispatch(0.0, 20_000):
        q.complete(d, 4096, 0.0)
    assert b.accumulated == 0.0 and a.accumulated > 100 * 0.001 / 100  # b was idle all along
    for _ in range(50_000):
        q.queue(b, READ, 4096, "b", 1.0)
    # b starts at most 1 ms of disk time (/shares) behind a, not a whole idle spell behind
    assert b.accumulated == pytest.approx(q._fq.vtime - 0.001 / 100)
    batch = q.dispatch(1.0, 2000)
    nb = sum(d.payload == "b" for d in batch)
    c4k = q.cost_model.cost(READ, 4096)
    ahead = 0.001 / c4k  # requests' worth of forgiveness
    assert nb <= 1000 + ahead / 2 + 2
    assert nb >= 1000  # and no penalty either


def test_metrics_shape_and_counts():
    q = IoQueue(DISK)
    q.create_class("r", 100)
    for i in range(10):
        q.queue("r", READ if i % 2 else WRITE, 8192, None, float(i) * 1e-3)
    ds = q.dispatch(0.01)
    m = q.metrics()
    assert m["queue"]["disk_queue_length"] == len(ds) == q.in_disk
    c = m["classes"]["r"]
    assert c["read_ops"] + c["write_ops"] == len(ds)
    assert c["read_bytes"] == 8192 * c["read_ops"]
    assert c["disk_queue_length"] == len(ds) and c["queue_length"] == 10 - len(ds)
    assert c["total_queue_delay"] == pytest.approx(sum(0.01 - i * 1e-3 for i in range(len(ds))))
    for d in ds:
        q.complete(d, 8192, 0.012)
    m = q.metrics()
    assert m["classes"]["r"]["total_exec_time"] == pytest.approx(0.002 * len(ds))
    assert m["queue"]["completed_cost"] == pytest.approx(m["classes"]["r"]["consumption"])
    assert m["queue"]["dispatched_cost"] == pytest.approx(m["queue"]["completed_cost"])
    assert m["classes"]["r"]["starvation_time"] == pytest.approx(0.01)  # queued at 0, first dispatch at 0.01
    for key in ("flow_ratio", "cost_scale", "capacity", "tokens", "max_read_length"):
        assert key in m["queue"]


def test_config_validation():
    with pytest.raises(ValueError, match="latency_goal_ms"):
        IoQueueConfig(latency_goal_ms=0)
    with pytest.raises(ValueError, match="split_alignment"):
        IoQueueConfig(split_alignment=0)


def test_class_limits_throttle_and_release():
    q = IoQueue(None)
    q.create_class("capped", 100)
    q.update_iops("capped", 1000, now=0.0)  # burst: 10 ms of it = 10 requests
    for i in range(100):
        q.queue("capped", READ, 4096, i, 0.0)
    first = q.dispatch(0.0)
    assert len(first) == 11  # the burst, plus the one that overdraws it
    assert q.get_class("capped").throttled
    t = q.next_dispatch_time(0.0)
    assert t == pytest.approx(0.001)  # one request's worth of deficit at 1000/s
    assert q.dispatch(t - 1e-6) == []
    assert len(q.dispatch(t)) == 1
    # lifting the limit releases the class at once
    q.update_iops("capped", None, now=t)
    assert len(q.dispatch(t)) == 100 - 12
    assert not q.get_class("capped").throttled
    assert q.next_dispatch_time(t) is None
    # a throttled class with nothing queued does not ask for a wake-up
    q.update_bandwidth("capped", 4096 * 100, now=t)  # 100 x 4k/s, a burst of 4 KiB
    r = q.queue("capped", READ, 8192, None, t)  # overdraws it
    (d,) = q.dispatch(t)
    assert d is r and q.get_class("capped").throttled
    assert q.next_dispatch_time(t) is None
    m = q.metrics()["classes"]["capped"]
    assert m["bandwidth_limit"] == 409600 and m["iops_limit"] is None
    with pytest.raises(ValueError, match="bandwidth"):
        q.update_bandwidth("capped", -1)


def test_lifting_one_limit_keeps_the_other():
    q = IoQueue(None)
    q.create_class("c", 100)
    q.update_iops("c", 100, now=0.0)  # a burst of 1 request
    q.update_bandwidth("c", 100e6, now=0.0)  # a burst of 1 MB
    for _ in range(10):
        q.queue("c", READ, 65536, None, 0.0)
    assert len(q.dispatch(0.0)) == 2  # the second overdraws the IOPS limit
    c = q.get_class("c")
    assert c.throttled and c._throttled_until == pytest.approx(0.01)
    q.update_bandwidth("c", None, now=0.001)
    assert c.throttled  # the IOPS deficit is still being paid back
    assert q.next_dispatch_time(0.001) == pytest.approx(0.01)
    q.update_iops("c", 1000, now=0.002)  # paid back faster now: 0.8 of a request left
    assert c._throttled_until == pytest.approx(0.0028)
    q.update_iops("c", None, now=0.002)
    assert not c.throttled and len(q.dispatch(0.002)) == 8


def test_bound_in_disk_holds_the_goal_and_queues_the_rest_fairly():
    q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True))
    cm = CostModel(DISK)
    a, b = q.create_class("a", 400), q.create_class("b", 100)
    for _ in range(1000):
        q.queue(a, READ, 4096, None, 0.0)
        q.queue(b, READ, 4096, None, 0.0)
    first = q.dispatch(0.0)
    assert len(first) == int(q.capacity / cm.cost(READ, 4096) + 1e-9)
    # Tokens refill, but the disk still holds the goal's worth: only a completion makes room.
    assert q.dispatch(1.0) == []
    assert q.next_dispatch_time(1.0) == float("inf")
    # From now on each completion lets one more in, in fair order: 4:1.
    t, got = 1.0, {"a": 0, "b": 0}
    inflight = list(first)
    for _ in range(1000):  # both classes stay backlogged throughout
        q.complete(inflight.pop(0), 4096, t)
        nxt = q.dispatch(t)
        for d in nxt:
            got[d.io_class.name] += 1
        inflight += nxt
        t += 1e-3
    assert got["a"] / got["b"] == pytest.approx(4.0, rel=0.02)


def test_in_disk_limit_scales_the_bound_not_the_bucket():
    cm = CostModel(DISK)
    q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0))
    cls = q.get_class("default")
    for _ in range(1000):
        q.queue(cls, READ, 4096, None, 0.0)
    per_goal = int(q.capacity / cm.cost(READ, 4096) + 1e-9)
    assert len(q.dispatch(0.0)) == per_goal  # the bucket still holds one goal: the burst
    assert len(q.dispatch(1.0)) == per_goal  # refilled: the disk may hold a second goal's worth
    assert q.dispatch(2.0) == []  # and no more until something completes
    assert q.next_dispatch_time(2.0) == float("inf")
    # grants respect the same bound
    q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True, in_disk_limit=2.0))
    cls = q.get_class("default")
    for t in (0.0, 1.0):
        g = q.open_grant(cls, t)
        assert g.budget == pytest.approx(q.capacity)
        while g.take(READ, 4096):
            pass
        q.commit_grant(g)
    assert q.open_grant(cls, 2.0) is None
    with pytest.raises(ValueError, match="in_disk_limit"):
        IoQueueConfig(in_disk_limit=0)


def test_dispatch_slice_hands_out_a_slice_of_the_bucket_per_call():
    from iosched import READ, DiskProperties, IoQueue, IoQueueConfig

    disk = DiskProperties(("/d",), read_iops=100_000, read_bandwidth=1 << 30, write_iops=100_000,
                          write_bandwidth=1 << 30)
    q = IoQueue(disk, IoQueueConfig(dispatch_slice=0.25), 0.0)
    st = q.get_class("default")
    for _ in range(200):
        q.queue(st, READ, 4096, None, 0.0)
    cost = q.cost_model.cost(READ, 4096)
    per_call = int(0.25 * q.capacity / cost + 1e-9)
    got = q.dispatch(0.0)
    assert len(got) == per_call  # not the whole bucket (4x as many)
    assert q.next_dispatch_time(0.0) == 0.0  # more may go at once: the caller comes back
    total = len(got)
    while True:
        more = q.dispatch(0.0)
        if not more:
            break
        total += len(more)
    assert total == int(q.capacity / cost + 1e-9)  # the bucket's tokens, all of them, in slices
    with pytest.raises(ValueError, match="dispatch_slice"):
        IoQueueConfig(dispatch_slice=1.5)


def test_dispatch_slice_never_holds_back_a_request_larger_than_a_slice():
    from iosched import WRITE, DiskProperties, IoQueue, IoQueueConfig

    disk = DiskProperties(("/d",), read_iops=100_000, read_bandwidth=100 << 20, write_iops=100_000,
                          write_bandwidth=100 << 20)
    q = IoQueue(disk, IoQueueConfig(dispatch_slice=0.1), 0.0)
    n = int(q.max_request_length[WRITE])  # the largest unsplit write: it costs most of the bucket
    assert q.cost_model.cost(WRITE, n) > 0.1 * q.capacity
    q.queue(q.get_class("default"), WRITE, n, None, 0.0)
    assert len(q.dispatch(0.0)) == 1
