"""IoQueueConfig.anticipate: while a class with requests in the disk has none queued, the classes
ahead of it in fairness wait for it (its tasks are about to queue more) -- until its requests in
the disk complete. What it does on the real disk is a benchmark (docs/scheduler.md)."""
from __future__ import annotations

import pytest
from test_knee import FAST

from iosched import READ, IoQueue, IoQueueConfig


def queue(anticipate: bool = True) -> IoQueue:
    q = IoQueue(FAST, IoQueueConfig(bound_in_disk=True, anticipate=anticipate))
    q.create_class("hi", 990)
    q.create_class("lo", 10)
    return q


def offer(q: IoQueue, name: str, n: int, now: float) -> None:
    for i in range(n):
        q.queue(q.get_class(name), READ, 4096, (name, i), now)


def names(batch) -> list[str]:
    return [d.io_class.name for d in batch]


def test_a_class_ahead_waits_for_one_about_to_queue_again():
    q = queue()
    offer(q, "hi", 3, 0.0)
    offer(q, "lo", 5, 0.0)
    first = q.dispatch(0.001)
    # fair order while both have work queued; once hi's queue is empty (its requests in the
    # disk) lo, far ahead (10 against 990 shares), waits for it, also within the round
    assert names(first) == ["hi", "lo", "hi", "hi"]
    assert q.dispatch(0.002) == []
    assert q.open_grant(q.get_class("lo"), 0.002) is None
    # hi queues again: it goes first, and lo still waits
    offer(q, "hi", 2, 0.003)
    assert names(q.dispatch(0.003)) == ["hi", "hi"]
    assert q.dispatch(0.0035) == []


def test_the_hold_ends_when_the_class_in_the_disk_completes():
    q = queue()
    offer(q, "hi", 3, 0.0)
    offer(q, "lo", 5, 0.0)
    first = q.dispatch(0.001)
    assert q.dispatch(0.002) == []  # lo waits for hi
    for d in first:
        if d.io_class.name == "hi":
            q.complete(d, 4096, 0.003)
    assert names(q.dispatch(0.003)) == ["lo"] * 4  # hi has nothing in the disk: no hold


def test_without_it_the_class_ahead_is_served():
    q = queue(anticipate=False)
    offer(q, "hi", 3, 0.0)
    offer(q, "lo", 5, 0.0)
    assert names(q.dispatch(0.001)) == ["hi", "lo", "hi", "hi", "lo", "lo", "lo", "lo"]


def test_the_option_is_checked():
    with pytest.raises(ValueError, match="anticipate"):
        IoQueueConfig(anticipate="yes")  # type: ignore[arg-type]
