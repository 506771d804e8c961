"""WakeupQueue: the engine's time shared between io classes by their shares.

When the engine, not the disk, is the bottleneck (a Python reactor in front of a fast disk),
nothing waits in the fair queue: the token bucket always has tokens and the in-disk bound is
never reached, so every class gets what its tasks push through the loop: equal CPU, equal
IOPS, whatever the shares (issue 17). Seastar pairs its disk scheduler with CPU scheduling
groups that share the reactor's time by shares. For I/O-driven work the moment a class's work
starts is its completion: the awaiting task resumes, runs and issues its next request. So the
reactor hands completions to this queue, by class, and each loop turn wakes at most ``budget``
of them, the class that has had the least (wake-ups / shares: its virtual time) first.

Work-conserving: a class alone is woken at once, whatever the budget; the budget only orders
and defers while two or more classes have completions waiting, i.e. when the loop cannot wake
them all in one turn without favouring whoever completes most. A class that was idle starts
again at the virtual time of the busiest waiting class (no credit for idleness, as in the fair
queue). Each wake-up costs the same here (one request's worth of the loop): good enough when the
classes' tasks do similar work per request, which is what an I/O-bound task does.

Pure: items are opaque; the reactor (ioengine/reactor.py) and the simulator (iosched/sim.py)
push and take them.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any

__all__ = ["WakeupQueue"]


class _Class:
    __slots__ = ("items", "shares", "vtime")

    def __init__(self, shares: float, vtime: float) -> None:
        self.items: deque[Any] = deque()
        self.shares = shares
        self.vtime = vtime


class WakeupQueue:
    """Completions waiting to wake their tasks, by class; see the module docstring.

    ``budget``: wake-ups per loop turn while two or more classes wait (at least 1).
    """

    __slots__ = ("budget", "_classes", "_waiting", "pending")

    def __init__(self, budget: int) -> None:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ValueError(f"WakeupQueue budget must be an int >= 1 (wake-ups per loop turn), got {budget!r}")
        self.budget = budget
        self._classes: dict[Hashable, _Class] = {}
        self._waiting: list[_Class] = []  # classes with items, in no particular order
        self.pending = 0  # items waiting

    def push(self, key: Hashable, shares: float, item: Any) -> None:
        """Add one completion of class ``key`` (with ``shares``)."""
        c = self._classes.get(key)
        if c is None:
            c = self._classes[key] = _Class(shares, 0.0)
        else:
            c.shares = shares
        if not c.items:
            # (re)joining: no credit for the time it was idle
            floor = min((w.vtime for w in self._waiting), default=c.vtime)
            if c.vtime < floor:
                c.vtime = floor
            self._waiting.append(c)
        c.items.append(item)
        self.pending += 1

    def charge(self, key: Hashable, shares: float, n: int) -> None:
        """Book ``n`` wake-ups of class ``key`` that went at once (nothing else was waiting):
        the same books as pushing and taking them."""
        c = self._classes.get(key)
        if c is None:
            c = self._classes[key] = _Class(shares, 0.0)
        c.shares = shares
        c.vtime += n / shares

    def take(self, out: list[Any]) -> None:
        """Append to ``out`` what this turn wakes: everything when one class waits, else up to
        ``budget`` items, least virtual time first."""
        waiting = self._waiting
        if not waiting:
            return
        if len(waiting) == 1:
            c = waiting.pop()
            n = len(c.items)
            out.extend(c.items)
            c.items.clear()
            c.vtime += n / c.shares
            self.pending -= n
            return
        for _ in range(self.budget):
            best = waiting[0]
            for c in waiting:
                if c.vtime < best.vtime:
                    best = c
            out.append(best.items.popleft())
            best.vtime += 1.0 / best.shares
            self.pending -= 1
            if not best.items:
                waiting.remove(best)
                if not waiting:
                    return

    def forget(self, key: Hashable) -> None:
        """Drop an idle class's books (its items, if any, stay and are woken)."""
        c = self._classes.get(key)
        if c is not None and not c.items:
            del self._classes[key]
