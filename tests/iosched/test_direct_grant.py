"""DirectGrant: a lone class dispatches at once, booked in one go; same books as queue + dispatch."""

from __future__ import annotations

import math
from collections import deque

import pytest

from iosched import READ, WRITE, DiskProperties, IoQueue, IoQueueConfig

DISK = DiskProperties(("/d",), read_iops=100_000, read_bandwidth=1_000_000_000,
                      write_iops=50_000, write_bandwidth=500_000_000)
C4K = 1 / 100_000  # cost of a 4 KiB read (max form): the IOPS term


def take_all(g, direction=READ, length=4096, limit=10_000):
    n = 0
    while n < limit and g.take(direction, length):
        n += 1
    return n


def test_a_grant_holds_the_tokens_and_commit_books_them():
    q = IoQueue(DISK)
    cls = q.get_class("default")
    g = q.open_grant(cls, 0.0)
    assert g is not None and g.budget == pytest.approx(q.capacity)
    n = take_all(g)
    assert n == round(q.capacity / C4K)  # 0.75 ms of a 100k IOPS disk: 75 reads
    assert cls.ops[READ] == n and cls.bytes[READ] == n * 4096
    q.commit_grant(g)
    assert q.in_disk == n and cls.nr_executing == n
    assert cls.consumption == pytest.approx(n * C4K)
    assert cls.accumulated == pytest.approx(n * C4K / cls.shares)
    assert q.metrics()["queue"]["tokens"] == pytest.approx(0.0, abs=1e-9)
    assert q.open_grant(cls, 0.0) is None  # nothing left at the same instant
    with pytest.raises(RuntimeError):
        g.take(READ, 4096)  # committed


def test_completions_balance_the_books_and_free_the_disk():
    q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True))
    cls = q.get_class("default")
    g = q.open_grant(cls, 0.0)
    for _ in range(9):
        assert g.take(READ, 4096)
    assert g.take(WRITE, 65536)  # a different size: costed on its own
    spent = 9 * C4K + 65536 / 500e6
    assert g.spent == pytest.approx(spent)
    with pytest.raises(RuntimeError):
        q.complete_grant(g, 1, 0.0)  # not committed yet
    q.commit_grant(g)
    # The disk holds the grant's cost: at a later time the tokens are back, the room is not.
    g2 = q.open_grant(cls, 1.0)
    assert g2.budget == pytest.approx(q.capacity - spent)
    q.commit_grant(g2)
    q.complete_grant(g, 4, 0.0002)
    q.complete_grant(g, 6, 0.0004)
    with pytest.raises(ValueError):
        q.complete_grant(g, 1, 0.0005)
    assert q.in_disk == 0 and cls.nr_executing == 0
    assert q._in_disk_cost == pytest.approx(0.0, abs=1e-15)
    assert cls.total_exec_time == pytest.approx(4 * 0.0002 + 6 * 0.0004)
    m = q.metrics()["queue"]
    assert m["completed_cost"] == pytest.approx(m["dispatched_cost"]) == pytest.approx(spent)


def test_no_grant_while_others_wait_or_the_class_is_limited():
    q = IoQueue(DISK)
    a, b = q.get_class("default"), q.create_class("b", 100)
    q.queue(b, READ, 4096, None, 0.0)
    assert q.open_grant(a, 0.0) is None  # b waits: the fair queue decides who goes
    q.dispatch(0.0)
    assert q.open_grant(a, 0.0) is not None
    q.update_iops("b", 1000, 0.0)
    assert q.open_grant(b, 0.0) is None  # limits are kept by the queue
    other = IoQueue(DISK)
    with pytest.raises(ValueError, match="does not belong"):
        other.open_grant(a, 0.0)


def test_a_request_that_would_be_split_is_not_taken():
    q = IoQueue(DISK)
    g = q.open_grant(q.get_class("default"), 0.0)
    assert not g.take(READ, int(q.max_request_length[READ]) + 4096)
    assert g.take(READ, int(q.max_request_length[READ]))
    assert g.n == 1


def test_a_grant_is_charged_like_queue_and_dispatch():
    """The same requests through a grant and through queue + dispatch leave the same books."""
    books = []
    for via_grant in (True, False):
        q = IoQueue(DISK, IoQueueConfig(bound_in_disk=True))
        cls = q.get_class("default")
        t = 0.0
        for turn in range(5):
            t += 0.0004
            if via_grant:
                g = q.open_grant(cls, t)
                taken = take_all(g, limit=20)
                q.commit_grant(g)
                q.complete_grant(g, taken, t + 0.0001)
            else:
                for _ in range(20):
                    q.queue(cls, READ, 4096, None, t)
                ds = q.dispatch(t)
                for d in ds:
                    q.complete(d, 4096, t + 0.0001)
                taken = len(ds)
                # what did not fit would wait; drop it to keep the turns alike
                for r in list(cls.queue):
                    q.cancel(r)
            books.append((via_grant, turn, taken))
        m = q.metrics()
        books.append((via_grant, m["classes"]["default"]["consumption"], m["queue"]["tokens"],
                      cls.accumulated, cls.total_exec_time))
    g_books = [b[1:] for b in books if b[0]]
    q_books = [b[1:] for b in books if not b[0]]
    for x, y in zip(g_books, q_books):
        assert x == pytest.approx(y)


def test_a_class_that_used_a_grant_yields_to_the_others_by_shares():
    q = IoQueue(DISK, IoQueueConfig(forgiveness_ms=10.0))
    a, b = q.get_class("default"), q.create_class("b", 1000)
    g = q.open_grant(a, 0.0)
    for _ in range(30):
        g.take(READ, 4096)
    q.queue(a, READ, 4096, "a", 0.0)  # a queues more while its grant is open
    q.commit_grant(g)  # and its heap entry now carries what the grant took
    for _ in range(5):
        q.queue(b, READ, 4096, "b", 0.0)
    out = q.dispatch(1.0)
    assert [d.payload for d in out][:5] == ["b"] * 5


def test_waking_class_gets_no_credit_through_a_grant():
    q = IoQueue(DISK, IoQueueConfig(forgiveness_ms=1.0))
    a, b = q.get_class("default"), q.create_class("b", 1000)
    # b runs alone for a while: the virtual time moves on
    t = 0.0
    for _ in range(50):
        t += 0.001
        g = q.open_grant(b, t)
        n = take_all(g)
        q.commit_grant(g)
        q.complete_grant(g, n, t)
    g = q.open_grant(a, t + 0.001)  # a wakes after idling all along
    take_all(g, limit=1)
    q.commit_grant(g)
    assert a.accumulated >= q._fq.vtime - 0.001 / a.shares - 1e-12


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_grants_keep_the_disk_within_bounds_when_the_calibration_is_wrong(speed):
    """A lone closed-loop class, turn by turn through grants, on a FIFO disk ``speed`` times
    as fast as calibrated: the disk never holds much more than the goal; a faster disk is
    held to the calibrated rate, a slower one gets its own rate."""
    cfg = IoQueueConfig(bound_in_disk=True)
    q = IoQueue(DISK, cfg)
    cls = q.get_class("default")
    service = C4K / speed
    depth, turn, horizon = 256, 20e-6, 0.5
    disk: deque[tuple[float, object]] = deque()  # (end time, grant)
    free_at = 0.0
    waiting = depth
    t = 0.0
    done = 0
    worst = 0.0
    while t < horizon:
        t += turn
        by_grant: dict[object, int] = {}
        while disk and disk[0][0] <= t:
            _, g = disk.popleft()
            by_grant[g] = by_grant.get(g, 0) + 1
        for g, k in by_grant.items():
            q.complete_grant(g, k, t)
            waiting += k
            done += k
        g = q.open_grant(cls, t)
        if g is None:
            continue
        k = take_all(g, limit=waiting)
        q.commit_grant(g)
        waiting -= k
        for _ in range(k):
            free_at = max(free_at, t) + service
            disk.append((free_at, g))
        if disk:
            worst = max(worst, disk[-1][0] - t)
    rate = done / horizon
    goal = cfg.latency_goal_ms / 1000
    if speed > 1:
        assert rate == pytest.approx(DISK.read_iops, rel=0.03)  # tokens hold the fast disk
        assert worst <= goal * 1.01
    else:
        assert rate == pytest.approx(DISK.read_iops * speed, rel=0.03)  # the slow disk's own rate
        assert worst <= goal / speed * 1.01  # the in-disk bound, in the slow disk's real time
    assert math.isfinite(worst)


def test_an_overdrawing_grant_keeps_the_rate_over_time():
    """grant_overdraw_ms: a grant may take that much of the rate beyond the tokens; the bucket
    goes into deficit and nothing else dispatches until it is repaid, so over any span the disk
    gets at most rate x span + the bucket + the overdraft."""
    over = 0.5  # ms
    q = IoQueue(DISK, IoQueueConfig(bound_in_disk=False, grant_overdraw_ms=over))
    cls = q.get_class("default")
    g = q.open_grant(cls, 0.0)
    assert g.budget == pytest.approx(q.capacity + over / 1000, rel=1e-6)  # 100k IOPS: 1e-5 s each
    taken = take_all(g)
    assert taken == round((q.capacity + over / 1000) / C4K)
    q.commit_grant(g)
    assert q.tokens == pytest.approx(-over / 1000)  # in deficit by the overdraft
    q.complete_grant(g, taken, 0.0)
    # at the same instant nothing is left; a queued request waits for the deficit to be repaid
    assert q.open_grant(cls, 0.0) is None
    q.queue(cls, READ, 4096, "x", 0.0)
    assert q.dispatch(0.0) == []
    assert q.next_dispatch_time(0.0) == pytest.approx((over / 1000 + C4K) / 1.0, rel=1e-6)
    # over a long run of grants the rate holds: 100k reads/s, plus the bucket and the overdraft
    q2 = IoQueue(DISK, IoQueueConfig(bound_in_disk=False, grant_overdraw_ms=over))
    c2 = q2.get_class("default")
    total, t = 0, 0.0
    while t < 0.1:
        g = q2.open_grant(c2, t)
        if g is not None:
            n = take_all(g)
            q2.commit_grant(g)
            q2.complete_grant(g, n, t)
            total += n
        t += 0.0002
    assert total <= 100_000 * 0.1 + round((q2.capacity + over / 1000) / C4K) + 1


def test_the_overdraft_is_checked():
    with pytest.raises(ValueError, match="grant_overdraw_ms"):
        IoQueueConfig(grant_overdraw_ms=-1)
