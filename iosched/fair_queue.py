"""The fair queue: which io class's request goes next.

Each class accumulates the cost (disk-seconds) of what it dispatched divided by its
shares; the class with the least accumulated value goes first (a heap keyed by it). So
backlogged classes get disk time in proportion to their shares, whatever their request
sizes.

A class that wakes from idle does not cash in the time it was idle: its accumulator is
raised to at least the fair queue's virtual time (the accumulator of the last class
served, i.e. about the least among the active ones) minus ``forgiveness / shares``. It
may get at most ``forgiveness`` disk-seconds ahead of its fair share (Seastar's
"forgiving factor", tau).

Per-class limits (bandwidth in bytes/s, IOPS) are token buckets that may run into deficit:
the request that overdraws one is still dispatched, and the class is then skipped
("unplugged" in Seastar) until the deficit is paid back, while the others go on.

The fair queue does not know about the disk's token bucket: ``dispatch`` is handed the
tokens available and returns what is left. Its entries, the queued requests (whole, split, or
a part), are defined here; the io queue (io_queue.py) makes them and builds on this module,
never the other way round.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

from .cost import READ
from .token_bucket import TokenBucket

__all__ = ["IoClassState", "FairQueue"]

_INF = math.inf


class QueuedRequest:
    """A request in the queue; also what ``dispatch`` hands out (alias ``Dispatch``).

    A request that was not split is dispatched as itself: ``d.request is d``, offset 0.
    A split request (``SplitRequest``) has ``parts`` (``RequestPart``), each dispatched
    with ``part.request`` = the parent and ``offset``/``length`` within it. ``result`` is
    set on completion (on a split request: the reassembled result).
    """

    # Few slots and few stores: one of these is made per request on the hot path.
    __slots__ = ("io_class", "direction", "length", "payload", "cost", "queued_at", "dispatched_at", "result")

    offset = 0  # class-level defaults for the common, unsplit request
    parts: list[RequestPart] | None = None

    def __init__(
        self, io_class: IoClassState, direction: int, length: int, payload: Any, cost: float, queued_at: float,
    ) -> None:
        self.io_class = io_class
        self.direction = direction
        self.length = length
        self.payload = payload
        self.cost = cost  # disk-seconds, unscaled
        self.queued_at = queued_at
        self.dispatched_at: float | None = None
        self.result: int | None = None

    @property
    def request(self) -> QueuedRequest:
        """The request this dispatch belongs to (itself, unless it is a part)."""
        return self

    @property
    def done(self) -> bool:
        return self.result is not None

    def __repr__(self) -> str:
        kind = "read" if self.direction == READ else "write"
        extra = f", parts={len(self.parts)}" if self.parts else ""
        if self.request is not self:
            extra += f", part of {id(self.request):#x}"
        return (
            f"{type(self).__name__}({self.io_class.name!r}, {kind}, offset={self.offset}, "
            f"length={self.length}{extra}, result={self.result})"
        )


class SplitRequest(QueuedRequest):
    """A request longer than the disk takes at once; it is dispatched as its ``parts``."""

    __slots__ = ("parts", "_pending")

    parts: list[RequestPart]
    _pending: int


class RequestPart(QueuedRequest):
    """One part of a ``SplitRequest``: ``offset``/``length`` within ``request``."""

    __slots__ = ("offset", "request")

    offset: int
    request: SplitRequest  # a slot here; an unsplit request has a property


Dispatch = QueuedRequest


class IoClassState:
    """An io class in one queue: its shares, queue, fairness state, limits and counters."""

    __slots__ = (
        "name", "shares", "_inv_shares", "_id", "_owner",
        "queue", "accumulated", "consumption",
        "_active", "_throttled_until", "_bw", "_iops", "limited",
        "nr_queued", "nr_executing", "in_disk_cost", "peak_demand", "peak_prev", "peak_window", "window_mark",
        "window_consumed", "fed", "fed_mark", "ops_mark", "window_fed", "activations",
        "ops", "bytes", "split_ops", "split_bytes",
        "total_queue_delay", "total_exec_time", "starvation_time", "_activated_at",
    )

    def __init__(self, name: str, shares: float, class_id: int, owner: object | None) -> None:
        self.name = name
        self.shares = shares
        self._inv_shares = 1.0 / shares
        self._id = class_id  # tie-break in the heap, so classes never get compared
        self._owner = owner  # None once removed
        self.queue: deque[QueuedRequest] = deque()
        self.accumulated = 0.0  # sum of cost/shares: the fairness key
        self.consumption = 0.0  # sum of cost (disk-seconds) dispatched
        self._active = False  # in the fair queue's heap
        self._throttled_until = 0.0  # > 0: skipped until then (a per-class limit is in deficit)
        self._bw: TokenBucket | None = None
        self._iops: TokenBucket | None = None
        #: True while a bandwidth or IOPS limit is set (read-only: set_limit keeps it): such a
        #: class always goes through the queue, never under a direct grant.
        self.limited = False
        self.nr_queued = 0  # requests (or parts) waiting in the scheduler
        self.nr_executing = 0  # dispatched, not completed
        self.in_disk_cost = 0.0  # their cost (unscaled; kept by a queue with properties)
        # IoQueueConfig.share_in_disk: peak demand (in the disk + queued cost) in the current
        # window and the last, and the current window's number
        self.peak_demand = 0.0
        self.peak_prev = 0.0
        self.peak_window = -2
        # ... and the cost it dispatched in the last window (consumption at the current one's start)
        self.window_mark = 0.0
        self.window_consumed = 0.0
        #: Requests issued by a task that a completion had just woken (the engine counts them:
        #: ioengine's IoPath while it delivers completions, the simulator for backlogged
        #: workloads): a closed loop, whose next request waits for the last one. Over the last
        #: window, window_fed is their fraction of what the class dispatched (1 until known).
        #: A paced class (requests on its own clock, an open loop) gains nothing from the
        #: others being held back, so it does not size their parts (IoQueue._class_rooms).
        self.fed = [0]
        self.fed_mark = 0
        self.ops_mark = 0
        self.window_fed = 1.0
        self.activations = 0
        self.ops = [0, 0]  # dispatched, by direction (parts count one each)
        self.bytes = [0, 0]
        self.split_ops = 0  # requests that were split
        self.split_bytes = 0
        self.total_queue_delay = 0.0  # seconds waited in the scheduler, summed over dispatches
        self.total_exec_time = 0.0  # seconds from dispatch to completion, summed
        self.starvation_time = 0.0  # seconds with work queued and nothing in the disk
        self._activated_at = 0.0

    @property
    def bandwidth_limit(self) -> float | None:
        return self._bw.rate if self._bw is not None else None

    @property
    def iops_limit(self) -> float | None:
        return self._iops.rate if self._iops is not None else None

    @property
    def throttled(self) -> bool:
        return self._throttled_until > 0.0

    def __repr__(self) -> str:
        return (
            f"IoClassState({self.name!r}, shares={self.shares:g}, queued={self.nr_queued}, "
            f"executing={self.nr_executing})"
        )


def check_shares(shares: float) -> float:
    """``shares`` as a float, or ValueError: the one rule for shares (iosched and the engine)."""
    if isinstance(shares, bool) or not isinstance(shares, (int, float)) or not (0 < shares < math.inf):
        raise ValueError(f"shares must be a positive finite number, got {shares!r}")
    return float(shares)


class FairQueue:
    """Classes by least accumulated cost/shares; per-class limits; bounded forgiveness."""

    __slots__ = ("_heap", "_throttled", "_next_unthrottle", "vtime", "forgiveness", "limit_burst", "dispatched_cost",
                 "parts_held")

    def __init__(self, forgiveness: float, limit_burst: float) -> None:
        self._heap: list[tuple[float, int, IoClassState]] = []
        self._throttled: list[IoClassState] = []
        self._next_unthrottle = math.inf
        self.vtime = 0.0  # accumulator of the last class served (Seastar's _last_accumulated)
        self.forgiveness = forgiveness  # disk-seconds a waking class may run ahead
        self.limit_burst = limit_burst  # seconds of a per-class limit that may come as a burst
        self.dispatched_cost = 0.0  # total cost (disk-seconds, unscaled) ever dispatched
        #: The last dispatch left every class that still waits held by its part of the disk
        #: (``rooms``): only a completion (or what others lend) lets them go, not tokens.
        self.parts_held = False

    # -- activation --------------------------------------------------------------------

    def _activate(self, cls: IoClassState) -> None:
        floor = self.vtime - self.forgiveness * cls._inv_shares
        if cls.accumulated < floor:
            cls.accumulated = floor
        cls._active = True
        cls.activations += 1
        heappush(self._heap, (cls.accumulated, cls._id, cls))

    def _deactivate(self, cls: IoClassState) -> None:
        if cls._active:
            cls._active = False
            self._heap = [e for e in self._heap if e[2] is not cls]
            heapify(self._heap)

    def push(self, cls: IoClassState, req: QueuedRequest, now: float) -> None:
        """Queue one request (or part) at the back of its class."""
        cls.queue.append(req)
        cls.nr_queued += 1
        if cls.nr_queued == 1 and cls.nr_executing == 0:
            cls._activated_at = now
        if not cls._active and not cls._throttled_until:
            self._activate(cls)

    def remove(self, cls: IoClassState, req: QueuedRequest) -> None:
        """Take a queued request out (cancellation); rare, so O(queue length)."""
        cls.queue.remove(req)
        cls.nr_queued -= 1
        if not cls.queue:
            self._deactivate(cls)

    def forget(self, cls: IoClassState) -> None:
        """Drop an (empty) class from the heap and the throttled list."""
        self._deactivate(cls)
        if cls in self._throttled:
            self._throttled.remove(cls)
            cls._throttled_until = 0.0

    def reshare(self, cls: IoClassState, shares: float) -> None:
        cls.shares = shares
        cls._inv_shares = 1.0 / shares

    # -- per-class limits ---------------------------------------------------------------

    def set_limit(self, cls: IoClassState, kind: str, rate: float | None, now: float, min_burst: float) -> None:
        """Set (or with None, lift) the class's ``"bw"`` or ``"iops"`` limit."""
        attr = "_bw" if kind == "bw" else "_iops"
        if rate is None:
            setattr(cls, attr, None)
        else:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0 < rate < math.inf):
                what = "bandwidth" if kind == "bw" else "IOPS"
                raise ValueError(f"a {what} limit must be a positive number or None, got {rate!r}")
            burst = max(rate * self.limit_burst, min_burst)
            tb: TokenBucket | None = getattr(cls, attr)
            if tb is None:
                setattr(cls, attr, TokenBucket(rate, burst, now))
            else:
                tb.update_rate(rate, now, burst)
        cls.limited = cls._bw is not None or cls._iops is not None
        if cls._throttled_until:
            # what is left of the deficit is paid back at the new rate (or not at all)
            until = 0.0
            for tb in (cls._bw, cls._iops):
                if tb is not None:
                    tb.replenish(now)
                    if tb.tokens < 0:
                        until = max(until, now + tb.deficiency() / tb.rate)
            if until:
                cls._throttled_until = until
                self._next_unthrottle = min(c._throttled_until for c in self._throttled)
            else:
                self._unthrottle(cls)

    def _throttle(self, cls: IoClassState, until: float) -> None:
        cls._throttled_until = until
        self._throttled.append(cls)
        if until < self._next_unthrottle:
            self._next_unthrottle = until

    def _unthrottle(self, cls: IoClassState) -> None:
        cls._throttled_until = 0.0
        if cls in self._throttled:
            self._throttled.remove(cls)
        self._next_unthrottle = min((c._throttled_until for c in self._throttled), default=math.inf)
        if cls.queue and not cls._active:
            self._activate(cls)

    def unthrottle_due(self, now: float) -> None:
        """Plug back the classes whose limits have been paid back by ``now``."""
        if now < self._next_unthrottle:
            return
        keep = []
        nxt = math.inf
        for cls in self._throttled:
            until = cls._throttled_until
            if until <= now:
                cls._throttled_until = 0.0
                if cls.queue and not cls._active:
                    self._activate(cls)
            else:
                keep.append(cls)
                if until < nxt:
                    nxt = until
        self._throttled = keep
        self._next_unthrottle = nxt

    def hold(self, cls: IoClassState, until: float) -> None:
        """Keep ``cls`` out of dispatch until ``until`` (an io group's fairness across shards:
        the class is ahead of one backlogged on another shard); a class already held stays so."""
        if cls._throttled_until:
            return
        self._deactivate(cls)
        self._throttle(cls, until)

    @property
    def next_unthrottle(self) -> float:
        return self._next_unthrottle

    # -- dispatch -----------------------------------------------------------------------

    def head(self) -> QueuedRequest | None:
        """The request that goes next (if tokens allow), or None."""
        heap = self._heap
        return heap[0][2].queue[0] if heap else None

    def dispatch(
        self,
        out: list[QueuedRequest],
        tokens: float,
        scale: float,
        cap: float,
        now: float,
        max_count: int,
        rooms: dict[IoClassState | None, float] | None = None,
        hold_above: float | None = None,
        hold_parked: bool = False,
    ) -> float:
        """Move requests, best class first, into ``out`` while their (scaled, capped) cost
        fits in ``tokens`` and fewer than ``max_count`` were moved; returns the tokens left.

        The first request that does not fit stops the round: serving a later class's
        smaller request instead would let small requests starve large ones. ``rooms``: the
        unscaled cost a class may still put in the disk as its own (its part,
        IoQueueConfig.share_in_disk) and, under None, what it may borrow beyond (shared by all
        classes: a run takes its own first); one that reaches both sits out the rest of the
        round, which goes on with the next class. ``hold_above`` (None: off): no class whose accumulator is
        above it is served (another class, about to queue, is behind; IoQueueConfig.anticipate);
        a class whose queue this round empties lowers it to its own accumulator.
        ``hold_parked`` (with ``rooms``): once a class sits out because its part is full, a
        class whose accumulator is above its own may use only its own part's room in this round:
        no loan, no request beyond it (IoQueueConfig.share_hold).
        """
        anticipate = hold_above is not None
        hold = _INF if hold_above is None else hold_above
        heap = self._heap
        vtime = self.vtime
        spent = 0.0
        n = 0
        blocked = False
        parked: list[tuple[float, int, IoClassState]] = []
        part_hold = _INF  # the least accumulator of a class parked at its full part (hold_parked)
        # The head class is served in runs: it keeps the disk while its accumulator stays
        # below the runner-up's (the smaller of the heap root's children), and its
        # counters are updated once per run rather than once per request.
        while heap and n < max_count and not blocked:
            acc, cid, cls = heap[0]
            if acc > hold:
                break
            h = len(heap)
            if h == 1:
                bound = hold
            else:
                bound = heap[1][0]
                if h > 2 and heap[2][0] < bound:
                    bound = heap[2][0]
                if hold < bound:
                    bound = hold
            q = cls.queue
            inv = cls._inv_shares
            limited = cls._bw is not None or cls._iops is not None
            room = max_count - n
            # ahead of a class parked at its full part: its own room only, no loan, no overshoot
            held = acc > part_hold
            if rooms is None:
                mine = own = _INF
            else:
                own = rooms.get(cls, _INF)
                lent = rooms[None]
                mine = (own if own > 0.0 else 0.0) + (lent if lent > 0.0 and not held else 0.0)
            full = False
            k = 0
            csum = 0.0  # cost dispatched in this run
            qsum = 0.0  # sum of queued_at, for the queue delay
            w_ops = 0
            nbytes = 0
            w_bytes = 0
            prev = acc
            while True:
                req = q[0]
                cost = req.cost
                if csum + cost > mine + 1e-12 and (k or cls.nr_executing or own == -_INF or held):
                    # its part of the disk is taken (one request may overshoot an empty part,
                    # unless the queue says not even one: -inf)
                    full = True
                    break
                c = cost * scale
                if c > cap:
                    c = cap
                if c > tokens:
                    blocked = True
                    break
                tokens -= c
                q.popleft()
                out.append(req)
                req.dispatched_at = now
                k += 1
                csum += cost
                qsum += req.queued_at
                length = req.length
                nbytes += length
                if req.direction:
                    w_ops += 1
                    w_bytes += length
                prev = acc
                acc += cost * inv
                if limited or not q or acc >= bound or k >= room:
                    break
            if not k:
                if full:
                    parked.append(heappop(heap))
                    if hold_parked and acc < part_hold:
                        part_hold = acc
                    continue
                break
            # bookkeeping that Seastar does in on_dispatch(), once for the run
            if prev > vtime:
                vtime = prev
            n += k
            spent += csum
            if own != _INF:  # a later run of this round has the rest: its own first, then the loan
                rooms[cls] = own - csum  # type: ignore[index]
                borrowed = csum - own if own > 0.0 else csum
                if borrowed > 0.0:
                    rooms[None] -= borrowed  # type: ignore[index]
            ops = cls.ops
            ops[0] += k - w_ops
            ops[1] += w_ops
            b = cls.bytes
            b[0] += nbytes - w_bytes
            b[1] += w_bytes
            cls.total_queue_delay += k * now - qsum
            cls.nr_queued -= k
            ne = cls.nr_executing
            cls.nr_executing = ne + k
            if not ne:
                cls.starvation_time += now - cls._activated_at
            cls.consumption += csum
            cls.accumulated = acc
            if limited:  # one request per run: it may overdraw the class's limit
                until = 0.0
                tb = cls._bw
                if tb is not None:
                    deficit = tb.grab(nbytes, now)
                    if deficit:
                        until = now + deficit / tb.rate
                tb = cls._iops
                if tb is not None:
                    deficit = tb.grab(1.0, now)
                    if deficit:
                        u = now + deficit / tb.rate
                        if u > until:
                            until = u
                if until:
                    heappop(heap)
                    cls._active = False
                    self._throttle(cls, until)
                    continue
            if not q:
                heappop(heap)
                cls._active = False
                if anticipate and acc < hold and not limited:
                    hold = acc  # it has requests in the disk and none queued: about to queue more
            elif full:
                heappop(heap)
                parked.append((acc, cid, cls))
                if hold_parked and acc < part_hold:
                    part_hold = acc
            else:
                heapreplace(heap, (acc, cid, cls))
        self.parts_held = bool(parked) and not heap
        for e in parked:
            heappush(heap, e)
        self.vtime = vtime
        self.dispatched_cost += spent
        return tokens

    def __len__(self) -> int:
        return len(self._heap)
