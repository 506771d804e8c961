"""The io queue of one disk: cost, token bucket, fair queue, splitting, metrics.

Life of a request (all times are arguments, in seconds)::

    req = q.queue(cls, READ, 131072, payload, now)     # split here if too large
    for d in q.dispatch(now):                          # what the tokens allow, fairest first
        submit(d.payload, d.offset, d.length)           # d is the request itself, or one part
    ...
    parent = q.complete(d, result, now)                 # the request, once all its parts are done
    t = q.next_dispatch_time(now)                       # call dispatch() again at t

The queue never calls the caller back: it returns what to do and when.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from heapq import heapify
from math import exp as _exp
from math import frexp as _frexp
from typing import Any

from .cost import DEFAULT_COST_FORM, READ, WRITE, CostForm, CostModel
from .fair_queue import Dispatch, FairQueue, IoClassState, QueuedRequest, RequestPart, SplitRequest, check_shares
from .io_group import SharedDisk
from .properties import DiskProperties
from .token_bucket import FlowMonitor, TokenBucket

__all__ = [
    "IoQueueConfig", "IoQueue", "QueuedRequest", "SplitRequest", "RequestPart", "Dispatch", "DirectGrant",
    "IoClassState", "READ", "WRITE",
]

# The rates the fair queue uses to weigh requests against each other when a disk has no
# io_properties: 4 KiB costs as much as its IOPS allows, large requests by their bytes.
# Nothing is throttled with them, they only order.
NOMINAL_PROPERTIES = DiskProperties(
    mountpoints=("<unconfigured>",),
    read_iops=100_000, read_bandwidth=1_000_000_000,
    write_iops=100_000, write_bandwidth=1_000_000_000,
)


@dataclass(frozen=True, slots=True)
class IoQueueConfig:
    """Every tunable of an io queue, with its default, in one place."""

    #: io_latency_goal_ms: the token bucket holds this much disk time, so the disk is never
    #: handed more work than it finishes in about this long (Seastar's default is 0.75 ms
    #: on modern disks, 1.5 ms otherwise).
    latency_goal_ms: float = 0.75
    #: The bucket is raised to hold at least this many ``min_request_size`` requests (in the
    #: costlier direction), so slow disks (HDDs: ~10 ms per request) are not kept at QD1.
    min_requests_in_bucket: int = 4
    min_request_size: int = 4096
    #: Back off when the flow ratio (cost dispatched / cost completed, both weighted by
    #: dispatch time over the window below) goes above this (Seastar: 1.1).
    flow_ratio_threshold: float = 1.1
    #: Time constant of that moving average, in units of the bucket's capacity (the
    #: effective latency goal): 20 x 0.75 ms = 15 ms. The ratio is about exp(T / window)
    #: for an in-disk time T, so 1.1 is crossed at T ~ 2 x the goal, and a disk's own
    #: latency up to that is not mistaken for a queue.
    flow_ratio_window: float = 20.0
    #: Cost multiplier above the threshold: 1 + gain * (ratio - threshold). With 40 and the
    #: window above, a disk twice slower than calibrated settles at under 3 x the goal of
    #: in-disk time, the multiplier at ~2 (proportional control: the error grows with the
    #: miscalibration, ~4 x the goal for a disk four times slower).
    flow_ratio_gain: float = 40.0
    #: Floor of the completed side of the ratio, as a fraction of the disk's rate: after an
    #: idle spell the window is nearly empty, and one burst in flight must not look like a
    #: disk falling behind.
    flow_ratio_prior: float = 0.1
    #: Upper bound of the back-off multiplier (costs are also capped at the bucket size).
    max_cost_scale: float = 64.0
    #: A class waking from idle may get this many disk-milliseconds ahead of its fair share
    #: (Seastar's tau is 5 ms; smaller keeps wake-up bursts short).
    forgiveness_ms: float = 1.0
    #: Shares of a class created without explicit shares, and of the default class.
    default_shares: float = 1000.0
    #: The class that exists from the start.
    default_class: str = "default"
    #: Parts of a split request are a multiple of this many bytes (O_DIRECT alignment).
    split_alignment: int = 4096
    #: Also bound what the disk holds (dispatched, not completed) by the bucket's size, not
    #: only the rate at which it is handed work. When the disk, or the engine driving it, is
    #: faster than calibrated, the rate alone never makes requests wait, and shares cannot
    #: bite; the bound keeps "the disk never holds more than the goal" true and queues the
    #: rest in fair order. Off by default (Seastar's rate-only behaviour); ioengine turns it on.
    bound_in_disk: bool = False
    #: That bound, in units of the bucket's capacity (the latency goal's worth of cost). A
    #: disk whose latency under a full mixed load exceeds the goal needs more than the goal's
    #: worth in flight to stay full; the rate still bounds bursts at the goal.
    in_disk_limit: float = 1.0
    #: Adapt the in-disk bound to the knee (issue 17): with ``bound_in_disk``, lower the bound
    #: below ``in_disk_limit`` goals while requests come back slower than the fastest seen
    #: (by more than ``knee_latency_ratio``), raise it while they do not and the bound is what
    #: holds requests back. Latency here is dispatch to ``complete``/``complete_grant``, so it
    #: rises when the disk queues *and* when the engine is too busy to reap completions: in
    #: both regimes the bound settles where throughput stops growing with depth, and what
    #: is offered beyond it waits in the fair queue, in the order shares decide -- which then
    #: also decides whose tasks get the engine's CPU. No effect without ``bound_in_disk``.
    adaptive_in_disk: bool = True
    #: The mean latency the adaptive bound allows, relative to the least seen for requests of
    #: the same cost (within a factor of 2): the knee's tolerance for queueing downstream of
    #: the scheduler (in the disk, or completions waiting for the engine's loop turn).
    knee_latency_ratio: float = 2.0
    #: The adaptive bound is updated once per this many milliseconds (with enough samples).
    knee_period_ms: float = 5.0
    #: Every this many milliseconds the adaptive bound spends one period at a quarter of its
    #: value and learns the least latencies afresh from it (BBR's ProbeRTT): the unloaded
    #: latency cannot be seen at the depth the bound holds, and the disk or engine may change.
    knee_probe_ms: float = 250.0
    #: Per-class bandwidth/IOPS limits allow a burst of this many milliseconds of their rate.
    limit_burst_ms: float = 10.0
    #: While two or more classes have work queued or in the disk, keep at least this fraction
    #: of the requests offered (queued + in the disk) waiting in the fair queue: the disk gets
    #: the rest, in the order shares decide. When the engine, not the disk, is the bottleneck,
    #: nothing else ever makes requests wait, and each class gets what its tasks push through
    #: the loop; tasks waiting here use no CPU, so the order also shares the engine's time
    #: (issue 17). It costs throughput only where the disk needs more than (1 - this) of what
    #: is offered to run at full speed. 0: off (Seastar's behaviour).
    fair_wait_fraction: float = 0.0
    #: While two or more classes have work queued or in the disk, split the in-disk bound among
    #: them by shares: a class may always fill its part (shares / the busy classes' shares of
    #: the bound), and beyond it only what the others lend (below). A class within its part keeps
    #: its direct grants while a class over its part waits in the fair queue (issue 17): when
    #: the engine, not the disk, is the bottleneck, the requests held back are the small
    #: class's, out of the disk, so the large class's come back sooner and it takes the
    #: throughput the small one gives up. A class holds its share while it keeps its part of the
    #: bound outstanding (in requests: bound x its shares / all busy shares; iosched/README.md).
    #: With ``bound_in_disk`` only.
    share_in_disk: bool = False
    #: The bound the busy classes split, in the bucket's capacities like ``in_disk_limit`` (the
    #: smaller of the two applies while two or more classes are busy; a class alone keeps
    #: ``in_disk_limit``). None: ``in_disk_limit``. To hold shares when the engine is the
    #: bottleneck, the split bound must be below what the classes offer together, i.e. near the
    #: depth where the disk's throughput stops growing; a class alone has no share to hold and
    #: keeps the deeper bound its batches like.
    share_in_disk_limit: float | None = None
    #: ... but a busy class whose demand (in the disk + queued) has stayed below its part lends
    #: what it does not use beyond ``share_lend_headroom`` x its peak demand over the last one or
    #: two windows of this many milliseconds: a class with few requests outstanding does not
    #: leave the disk idle, and one that keeps its part busy lends nothing.
    share_lend_window_ms: float = 5.0
    share_lend_headroom: float = 1.25
    #: ... and a busy class whose peak demand stays below its part but at least this fraction
    #: of it (or of its shares' fraction of what the busy classes offer together, or of what
    #: the busiest other class offers, when less) is taken to be filling what it can (its
    #: tasks are held by the engine, not idle):
    #: the bound the classes split then shrinks to what that demand is the share of, so the
    #: others' parts shrink with it and shares hold even where the bound is far above what the
    #: classes offer together (a calibration above what the engine pushes; issue 17); the
    #: others' parts are then corrected once a window by what each class got (iosched/README.md).
    #: A class below this fraction lends instead. 1: off (the parts follow the bound alone).
    share_follow_demand: float = 0.6
    #: While a class sits out a dispatch round because its part of the disk is full, the
    #: classes whose fairness accumulator is ahead of its own sit out too: what its part
    #: leaves of the tokens is not theirs to take. Without it, where the disk's latency at
    #: depth exceeds the split bound's worth (a disk slower than calibrated) the large class
    #: was held by its part and the small one took the tokens it left: a class with 1 % of the
    #: shares got 1.3-2.4x its entitlement (docs/scheduler.md, session 18). False: the round
    #: goes on with the next class (work-conserving).
    share_hold: bool = True
    #: While a class with requests in the disk has none queued, hold back the classes whose
    #: fairness accumulator is ahead of its own: its tasks are about to queue more (they wait
    #: for the engine's next loop turn), and serving the others meanwhile hands them its share
    #: (issue 17: with the disk's rate the bottleneck, a class with 1 % of the shares got 3-8x
    #: its entitlement, because the large class's queue ran empty between loop turns). The hold
    #: lasts at most until that class's requests in the disk complete.
    anticipate: bool = False
    #: A direct grant may take this many milliseconds of the rate beyond the tokens there
    #: (the bucket goes into deficit, repaid before anything else dispatches): a lone class
    #: whose engine runs near the calibrated rate then keeps its grant through a loop turn's
    #: burst of requests instead of sending the rest of the turn through the queue. The rate
    #: still holds over time; a burst may exceed the bucket by this much. 0: Seastar's bucket.
    grant_overdraw_ms: float = 0.0
    #: Each ``dispatch`` hands out at most this fraction of the bucket's capacity (0: all that
    #: the tokens and the in-disk room allow). After a stall the bucket holds a burst's worth of
    #: tokens; handed out at once, whatever the best class has queued goes first and the rest
    #: goes to whoever has the most queued, usually a class with few shares (issue 17: a 1 %
    #: class got many times its entitlement). In slices, one per engine loop turn, the tasks
    #: that completions woke requeue between slices and keep their share.
    #: ``next_dispatch_time`` says "now" while a slice is all that held requests back.
    dispatch_slice: float = 0.0
    #: Shards sharing a disk (``IoQueue(shared=...)``, see iosched.io_group): while the disk is
    #: contended, a class may run this far ahead of the least-served class backlogged on any
    #: shard, in bucket capacities of its own cost, before it waits (``group_hold`` of them).
    group_lead: float = 0.5
    #: ... and may bank at most this much credit (capacities) while it does not use its share.
    group_forgiveness: float = 4.0
    #: The disk counts as contended while the tokens, or the room in the disk left by all
    #: shards, are below this fraction of the bucket's capacity; else nobody waits.
    group_contended: float = 1.0
    #: A class counts as backlogged on some shard for this long (capacities of time, i.e.
    #: latency goals) after a shard last had it waiting.
    group_window: float = 4.0
    #: How long a class that is too far ahead waits before it looks again (latency goals).
    group_hold: float = 0.25
    #: "max" or "additive" (see iosched.cost).
    cost_form: CostForm = DEFAULT_COST_FORM
    #: Costs for ordering when the disk has no io_properties (never throttled).
    nominal_properties: DiskProperties = NOMINAL_PROPERTIES

    def __post_init__(self) -> None:
        for name in ("latency_goal_ms", "flow_ratio_window", "default_shares", "flow_ratio_threshold",
                     "flow_ratio_gain", "flow_ratio_prior", "in_disk_limit", "knee_period_ms",
                     "knee_probe_ms", "share_lend_window_ms", "share_lend_headroom"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise ValueError(f"IoQueueConfig.{name} must be a positive number, got {v!r}")
        for name in ("split_alignment", "min_request_size", "min_requests_in_bucket"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"IoQueueConfig.{name} must be a positive integer, got {v!r}")
        v = self.share_follow_demand
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 < v <= 1):
            raise ValueError(f"IoQueueConfig.share_follow_demand must be a number in (0, 1], got {v!r}")
        if not (isinstance(self.knee_latency_ratio, (int, float)) and 1 < self.knee_latency_ratio < math.inf):
            raise ValueError(f"IoQueueConfig.knee_latency_ratio must be a number > 1, got {self.knee_latency_ratio!r}")
        if not (isinstance(self.dispatch_slice, (int, float)) and not isinstance(self.dispatch_slice, bool)
                and 0 <= self.dispatch_slice <= 1):
            raise ValueError(f"IoQueueConfig.dispatch_slice must be in [0, 1], got {self.dispatch_slice!r}")
        if not (isinstance(self.fair_wait_fraction, (int, float)) and 0 <= self.fair_wait_fraction < 1):
            raise ValueError(f"IoQueueConfig.fair_wait_fraction must be in [0, 1), got {self.fair_wait_fraction!r}")
        if not isinstance(self.anticipate, bool):
            raise ValueError(f"IoQueueConfig.anticipate must be True or False, got {self.anticipate!r}")
        if not isinstance(self.share_in_disk, bool):
            raise ValueError(f"IoQueueConfig.share_in_disk must be True or False, got {self.share_in_disk!r}")
        v = self.share_in_disk_limit
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf):
            raise ValueError(f"IoQueueConfig.share_in_disk_limit must be None or a positive number, got {v!r}")
        if not (isinstance(self.grant_overdraw_ms, (int, float)) and 0 <= self.grant_overdraw_ms < math.inf):
            raise ValueError(f"IoQueueConfig.grant_overdraw_ms must be a number >= 0, got {self.grant_overdraw_ms!r}")
        if self.forgiveness_ms < 0 or self.limit_burst_ms <= 0 or self.max_cost_scale < 1:
            raise ValueError("IoQueueConfig: forgiveness_ms >= 0, limit_burst_ms > 0 and max_cost_scale >= 1 required")




class DirectGrant:
    """Leave for one io class to dispatch requests at once, without queueing them.

    ``IoQueue.open_grant`` hands one out when nothing else waits in the queue: dispatching a
    lone class's request the moment it arrives is what ``queue`` + ``dispatch`` would do
    anyway, but per request it is one cost lookup and a subtraction instead of an object
    and a trip through the fair queue. The grant holds the tokens (and the room in the disk)
    available when it was opened; ``take`` spends them. ``IoQueue.commit_grant`` then books
    what was taken as one dispatch at ``at`` (tokens, the class's fairness accumulator,
    in-disk cost, the flow ratio), and ``IoQueue.complete_grant`` books completions in
    batches. A caller may inline ``take`` (the engine does, on its per-request path); it
    must then keep its arithmetic.

    Between open and commit the queue's own state is stale: commit before anything else
    asks the queue (queue, dispatch, next_dispatch_time, class changes).
    """

    __slots__ = ("queue", "io_class", "at", "scale", "budget", "opened_with", "n", "committed", "completed",
                 "completed_cost", "reaped", "refill", "last_length", "last_direction", "last_cost")

    def __init__(self, queue: IoQueue, io_class: IoClassState, at: float, budget: float, scale: float) -> None:
        self.queue = queue
        self.io_class = io_class
        self.at = at  # the dispatch time of everything taken under the grant
        self.budget = budget  # unscaled disk-seconds still available
        self.opened_with = budget
        self.scale = scale  # the flow ratio's cost multiplier when it was opened
        self.n = 0  # requests taken
        self.committed = False
        self.completed = 0  # requests whose completion was booked
        self.completed_cost = 0.0
        self.reaped = 0  # scratch for the caller: completions seen, not yet booked
        # tokens beyond the budget that its class's completions may give back (IoQueue.refill_grant):
        # a grant held to the room in the disk, not to the tokens
        self.refill = 0.0
        # one-entry cost cache, carried from grant to grant: a workload mostly repeats one size
        self.last_length, self.last_direction, self.last_cost = queue._grant_cost

    @property
    def spent(self) -> float:
        """Unscaled cost taken so far."""
        return self.opened_with - self.budget

    def cost_of(self, direction: int, length: int) -> float:
        """The cost ``take`` charges (cached); inf for a request that would have to be split."""
        q = self.queue
        c = q._cost(direction, length) if length <= q._max_len[direction] else _INF
        self.last_length = length
        self.last_direction = direction
        self.last_cost = c
        q._grant_cost = (length, direction, c)
        return c

    def take(self, direction: int, length: int) -> bool:
        """Dispatch one request under the grant if it fits; False: queue it instead."""
        if self.committed:
            raise RuntimeError("this grant was committed; open a new one")
        if length == self.last_length and direction == self.last_direction:
            c = self.last_cost
        else:
            c = self.cost_of(direction, length)
        if c > self.budget:
            return False
        self.budget -= c
        self.n += 1
        cls = self.io_class
        cls.ops[direction] += 1
        cls.bytes[direction] += length
        return True

    def __repr__(self) -> str:
        return (f"DirectGrant({self.io_class.name!r}, at={self.at:g}, taken={self.n}, "
                f"spent={self.spent:g}, left={self.budget:g}, completed={self.completed})")

_EPS = 1e-12  # disk-seconds: far below any request's cost
_INF = math.inf
# bounds of IoQueue._follow_scale: the others' parts next to a demand-sized bound
_FOLLOW_MIN = 1.0 / 64
_FOLLOW_MAX = 2.0
# IoQueue._class_rooms' room for a class that may not overshoot its part (FairQueue.dispatch)
_NO_OVERSHOOT = -math.inf
# A class sizes the others' parts only while at least this fraction of its requests are fed
# (IoClassState.fed: a closed loop), judged once it has dispatched _FED_MIN_OPS since the last look
_FED_LEADS = 0.75
_FED_MIN_OPS = 16


class _Knee:
    """The adaptive in-disk bound (``IoQueueConfig.adaptive_in_disk``): a gradient controller.

    Inputs, per completion booked (``complete``, ``complete_grant``): its cost and its latency
    from dispatch to the booking (the caller's ``now``). Per cost band (a factor of 2) it
    keeps the least latency seen, ``m``; each period it takes ``G``, the mean of
    ``m / latency`` over the period's completions (1: nothing queues downstream of the
    scheduler; 1/2: requests take twice the least), and scales the bound by
    ``sqrt(G * ratio)`` (at most halving it), between a floor of a few minimum-size requests
    and the static bound. It is raised only when the bound was what held requests back in
    that period. Equilibrium: mean latency = ``ratio`` x the least, i.e. a little queueing
    downstream (enough to keep the bottleneck busy), the rest waiting in the fair queue.

    The least latency must be seen at a small depth, which the bound itself may prevent (in
    an engine-bound loop every completion waits for a loop turn whose length grows with the
    depth). So, like BBR's ProbeRTT, one period in every ``knee_probe_ms`` runs at a quarter
    of the bound and the least latencies are learnt afresh from it (the first probe follows
    periods 1, 4 and 16, while the bound settles): a slower disk or engine is learnt at the
    next probe.

    While fewer than two classes have work queued or in the disk, shares decide nothing: the
    static bound applies (a class alone keeps its best batches) and the learnt bound waits.
    """

    __slots__ = ("q", "ratio", "period", "probe_every", "ceiling", "floor", "mins", "g", "n", "next", "hit",
                 "updates", "probing", "saved", "alone")

    def __init__(self, q: IoQueue, config: IoQueueConfig, now: float) -> None:
        self.q = q
        self.ratio = config.knee_latency_ratio
        self.period = config.knee_period_ms / 1000.0
        self.probe_every = max(2, round(config.knee_probe_ms / config.knee_period_ms))
        self.ceiling = q._in_disk_limit
        cost = q._cost
        min_req = max(cost(READ, config.min_request_size), cost(WRITE, config.min_request_size))
        self.floor = min(self.ceiling, config.min_requests_in_bucket * min_req)
        self.mins: dict[int, float] = {}
        self.g = 0.0  # sum of least / latency over the period
        self.n = 0  # completions in the period
        self.next = now + self.period
        self.hit = False  # the bound held something back in this period
        self.updates = 0
        self.probing = False
        self.saved = self.ceiling  # the bound to return to after a probe, or when not alone
        self.alone = False  # fewer than two classes busy: the static bound applies

    def sample(self, cost: float, latency: float, count: int, now: float) -> None:
        if latency > 0.0:
            e = _frexp(cost)[1]
            m = self.mins.get(e)
            if m is None or latency < m:
                self.mins[e] = m = latency
            self.g += count * m / latency
            self.n += count
        if now >= self.next:
            self.update(now)

    def update(self, now: float) -> None:
        self.next = now + self.period
        q = self.q
        if self.probing:  # the probe's period is over: back to the bound it interrupted
            self.probing = False
            q._in_disk_limit = self.saved
            self.g = 0.0
            self.n = 0
            self.hit = False
            return
        n = self.n
        if n < 16:  # too few to judge: keep collecting
            return
        busy = 0
        for c in q._classes.values():
            if c.nr_queued or c.nr_executing:
                busy += 1
        if busy < 2:
            # Shares decide nothing for a class alone: it gets the static bound (the depth
            # that batches best); what was learnt is kept for when another class wakes.
            if not self.alone:
                self.alone = True
                self.saved = q._in_disk_limit
                q._in_disk_limit = self.ceiling
            self.g = 0.0
            self.n = 0
            self.hit = False
            return
        if self.alone:
            self.alone = False
            q._in_disk_limit = self.saved
            self.g = 0.0
            self.n = 0
            self.hit = False
            return
        f = self.g / n * self.ratio
        if f > 1.0 and not self.hit:
            f = 1.0  # the bound held nothing back: no evidence that more depth helps
        f = math.sqrt(f)
        if f < 0.5:
            f = 0.5
        limit = q._in_disk_limit * f
        if limit < self.floor:
            limit = self.floor
        elif limit > self.ceiling:
            limit = self.ceiling
        q._in_disk_limit = limit
        self.g = 0.0
        self.n = 0
        self.hit = False
        self.updates += 1
        u = self.updates
        if u % self.probe_every == 1 or u == 4 or u == 16:  # sooner while the bound settles
            self.probing = True
            self.saved = limit
            self.mins.clear()
            q._in_disk_limit = self.floor


class IoQueue:
    """One disk's scheduler. ``props=None``: fair ordering only, no throttling, no splitting."""

    __slots__ = (
        "config", "properties", "cost_model", "_cost", "_fq", "_classes", "_next_id",
        "_bucket", "_flow", "throttling", "_max_len", "_alignment", "_in_disk", "_in_disk_cost", "_bound_in_disk",
        "_in_disk_limit", "_share_limit", "_now",
        "_grant_cost", "_knee", "_shared", "_others", "_slots", "_synced", "_share", "_lend_rate", "_overdraw",
        "_follow_scale", "_follow_window", "_follow_credit",
    )

    def __init__(self, props: DiskProperties | None, config: IoQueueConfig = IoQueueConfig(), now: float = 0.0,
                 shared: SharedDisk | None = None) -> None:
        """``shared``: this disk's state common to several shards' queues (iosched.io_group);
        only a disk with properties uses it."""
        self.config = config
        self.properties = props
        #: True when the queue has disk properties and throttles (read-only).
        self.throttling = props is not None
        self.cost_model = CostModel(props if props is not None else config.nominal_properties, config.cost_form)
        self._cost = self.cost_model.cost
        self._fq = FairQueue(config.forgiveness_ms / 1000.0, config.limit_burst_ms / 1000.0)
        self._classes: dict[str, IoClassState] = {}
        self._next_id = 0
        self._in_disk = 0
        self._in_disk_cost = 0.0  # unscaled cost dispatched and not completed
        self._bound_in_disk = config.bound_in_disk
        #: split the in-disk bound among the busy classes (IoQueueConfig.share_in_disk)
        self._share = config.share_in_disk and config.bound_in_disk and props is not None
        self._lend_rate = 1000.0 / config.share_lend_window_ms  # windows per second
        self._share_limit = math.inf  # the bound the busy classes split (share_in_disk_limit), set below
        # the others' parts next to a class whose demand sizes the split bound (share_follow_demand)
        self._follow_scale = 1.0
        self._follow_window = -2
        self._follow_credit = 0.0  # ... and what they got less than their share (cost; < 0: more)
        self._overdraw = 0.0  # tokens a grant may take beyond the bucket (grant_overdraw_ms), set below
        self._now = now
        self._alignment = config.split_alignment
        self._grant_cost = (-1, -1, 0.0)  # DirectGrant's cost cache (length, direction, cost)
        if props is not None:
            rate = props.rate_factor  # disk-seconds per second
            # Capacity: the latency goal's worth of disk time (costs are not pre-multiplied by
            # rate_factor as in Seastar, so the bucket is), but never so small that fewer than
            # a few minimum-size requests fit: on a slow disk one 4k write can exceed the goal.
            cost = self._cost
            min_req = max(cost(READ, config.min_request_size), cost(WRITE, config.min_request_size))
            capacity = max(config.latency_goal_ms / 1000.0 * rate, config.min_requests_in_bucket * min_req)
            self._bucket: TokenBucket | None = TokenBucket(rate, capacity, now)
            self._overdraw = config.grant_overdraw_ms / 1000.0 * rate
            self._in_disk_limit = capacity * config.in_disk_limit
            if config.share_in_disk_limit is not None:
                self._share_limit = capacity * config.share_in_disk_limit
            window = capacity / rate * config.flow_ratio_window  # seconds
            self._max_len = [self._max_length(d, props, capacity) for d in (READ, WRITE)]
        else:
            self._bucket = None
            self._in_disk_limit = math.inf
            self._max_len = [math.inf, math.inf]
            rate = 1.0
            window = config.latency_goal_ms / 1000.0 * config.flow_ratio_window
        self._flow = FlowMonitor(
            threshold=config.flow_ratio_threshold,
            tau=window,
            gain=config.flow_ratio_gain,
            prior=config.flow_ratio_prior * rate,
            max_scale=config.max_cost_scale,
            now=now,
        )
        #: the adaptive in-disk bound's controller (None when off); it sets _in_disk_limit
        adaptive = config.adaptive_in_disk and self._bound_in_disk and props is not None
        self._knee = _Knee(self, config, now) if adaptive else None
        #: the shards' common bucket, in-disk cost and class accumulators (None: this queue's own)
        self._shared = shared if props is not None else None
        self._others = 0.0  # other shards' in-disk cost, as of the last sync
        self._synced = (now, 0.0)  # (time, tokens) of the last sync: what dispatch saw
        self._slots: dict[str, int] = {}  # class name -> its slot in the shared state
        if self._shared is not None and self._bucket is not None:
            self._shared.bind(self._bucket.rate, self._bucket.limit, now)
        self.create_class(config.default_class, config.default_shares)

    def _max_length(self, direction: int, props: DiskProperties, capacity: float) -> float:
        """Largest request that fits the bucket (and the saturation length), aligned down."""
        a = self._alignment
        n = self.cost_model.max_length(direction, capacity)
        sat = props.read_saturation_length if direction == READ else props.write_saturation_length
        if sat is not None and sat < n:
            n = sat
        return max(a, int(n) // a * a)

    # -- classes ------------------------------------------------------------------------

    def create_class(self, name: str, shares: float | None = None) -> IoClassState:
        """Create an io class (``shares`` defaults to ``config.default_shares``)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"an io class name must be a non-empty string, got {name!r}")
        if name in self._classes:
            raise ValueError(f"io class {name!r} already exists in the queue of {self._label()}")
        shares = check_shares(self.config.default_shares if shares is None else shares)
        cls = IoClassState(name, shares, self._next_id, self)
        self._next_id += 1
        self._classes[name] = cls
        return cls

    def get_class(self, name: str) -> IoClassState:
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(f"no io class {name!r} in the queue of {self._label()}; "
                           f"known: {sorted(self._classes)}") from None

    @property
    def classes(self) -> dict[str, IoClassState]:
        """The classes by name (a copy)."""
        return dict(self._classes)

    def remove_class(self, name: str) -> None:
        """Remove a class. Refused (ValueError) while it has requests waiting in the queue:
        cancel or dispatch them first. Requests already in the disk may complete afterwards;
        their completions are still accepted."""
        cls = self.get_class(name)
        if cls.nr_queued:
            raise ValueError(
                f"io class {name!r} still has {cls.nr_queued} queued request(s); "
                f"cancel or dispatch them before removing the class"
            )
        self._fq.forget(cls)
        cls._owner = None
        del self._classes[name]

    def rename_class(self, old: str, new: str) -> None:
        cls = self.get_class(old)
        if new == old:
            return
        if not isinstance(new, str) or not new:
            raise ValueError(f"an io class name must be a non-empty string, got {new!r}")
        if new in self._classes:
            raise ValueError(f"cannot rename io class {old!r} to {new!r}: that name is taken")
        del self._classes[old]
        cls.name = new
        self._classes[new] = cls

    def set_shares(self, name: str, shares: float) -> None:
        """Change a class's shares; applies to what it dispatches from now on."""
        self._fq.reshare(self.get_class(name), check_shares(shares))

    def update_bandwidth(self, name: str, bytes_per_second: float | None, now: float | None = None) -> None:
        """Cap the class at ``bytes_per_second`` (None lifts the cap)."""
        cls = self.get_class(name)
        min_burst = self._max_len[READ] if self.throttling else self.config.min_request_size
        self._fq.set_limit(cls, "bw", bytes_per_second, self._now if now is None else now, float(min_burst))

    def update_iops(self, name: str, iops: float | None, now: float | None = None) -> None:
        """Cap the class at ``iops`` requests per second (parts of split requests count)."""
        self._fq.set_limit(self.get_class(name), "iops", iops, self._now if now is None else now, 1.0)

    # -- the hot path -------------------------------------------------------------------

    def queue(
        self, io_class: IoClassState | str, direction: int, length: int, payload: Any, now: float,
        alignment: int | None = None,
    ) -> QueuedRequest:
        """Queue a request; returns it (its ``result`` is set by ``complete``).

        ``alignment``: parts of a split are multiples of it (default
        ``config.split_alignment``).
        """
        cls = self._classes[io_class] if isinstance(io_class, str) else io_class
        if cls._owner is not self:
            raise ValueError(f"io class {cls.name!r} does not belong to this queue (removed, or another disk's)")
        self._fq.parts_held = False  # a class within its part may have queued
        if direction != 0 and direction != 1 or length < 0:  # READ, WRITE
            if length < 0:
                raise ValueError(f"request length must be >= 0, got {length!r}")
            raise ValueError(f"direction must be READ (0) or WRITE (1), got {direction!r}")
        max_len = self._max_len[direction]
        if alignment is not None and alignment != self._alignment:
            if not (isinstance(alignment, int) and alignment > 0):
                raise ValueError(f"alignment must be a positive integer, got {alignment!r}")
            if max_len != _INF and max_len % alignment:
                max_len = max(alignment, int(max_len) // alignment * alignment)
        if length <= max_len:
            req = QueuedRequest(cls, direction, length, payload, self._cost(direction, length), now)
            # FairQueue.push, inlined: this is the per-request path
            cls.queue.append(req)
            n = cls.nr_queued = cls.nr_queued + 1
            if n == 1 and not cls.nr_executing:
                cls._activated_at = now
            if not cls._active and not cls._throttled_until:
                self._fq._activate(cls)
            return req
        return self._queue_split(cls, direction, length, payload, now, int(max_len))

    def _queue_split(self, cls: IoClassState, direction: int, length: int, payload: Any, now: float,
                     part_len: int) -> SplitRequest:
        cost = self._cost
        parent = SplitRequest(cls, direction, length, payload, 0.0, now)
        parts = []
        total = 0.0
        for off in range(0, length, part_len):
            n = min(part_len, length - off)
            c = cost(direction, n)
            p = RequestPart(cls, direction, n, payload, c, now)
            p.offset = off
            p.request = parent
            parts.append(p)
            total += c
        parent.cost = total
        parent.parts = parts
        parent._pending = len(parts)
        cls.split_ops += 1
        cls.split_bytes += length
        fq = self._fq
        for p in parts:
            fq.push(cls, p, now)
        return parent

    def dispatch(self, now: float, max_requests: int | None = None) -> list[QueuedRequest]:
        """The requests (or parts) to submit now, in fair order, as far as tokens allow.

        ``max_requests`` bounds the batch (e.g. free submission-queue slots); without
        properties it is the only bound.
        """
        self._now = now
        fq = self._fq
        fq.parts_held = False
        if fq._next_unthrottle <= now:
            fq.unthrottle_due(now)
        if not fq._heap:
            return []
        out: list[QueuedRequest] = []
        n = max_requests if max_requests is not None else 1 << 62
        wf = self.config.fair_wait_fraction
        if wf:
            k = self._fair_room(wf)
            if k < n:
                if k <= 0:
                    return []
                n = k
        b = self._bucket
        before = fq.dispatched_cost
        sh = self._shared
        if b is not None:
            if sh is None:
                b.replenish(now)
                avail = b.tokens
            else:
                avail, self._others = sh.sync(now, self._in_disk_cost)
                self._synced = (now, avail)
                if self._hold_leaders(now, avail):
                    return []
            # The disk never holds more than the latency goal's worth of work: besides the
            # rate (tokens), what is in the disk bounds what may go next. This is what makes
            # shares bite when the disk (or the engine driving it) is faster than calibrated.
            scale = self._flow.scale(now)
            # (room is in unscaled cost; the fair queue charges scaled cost against the budget)
            rooms = self._class_rooms() if self._share else None
            if self._bound_in_disk:
                room = self._in_disk_limit - self._in_disk_cost - self._others
                if rooms is not None:  # each class's own part and what is lent bound it (fq.dispatch)
                    room = sum(r for r in rooms.values() if r > 0.0)
                    # ... but a class with nothing in the disk may always send one request, even
                    # one larger than its part (FairQueue.dispatch lets it overshoot): the budget
                    # must not stall it (128 KiB writes next to a class with 10x the shares)
                    for e in fq._heap:
                        waiting = e[2]
                        if (not waiting.nr_executing and waiting.queue and waiting.queue[0].cost > room
                                and rooms.get(waiting) != _NO_OVERSHOOT):
                            room = waiting.queue[0].cost
                knee = self._knee
                if knee is not None and room < avail:
                    knee.hit = True
                    if room > _EPS and self._in_disk_limit < knee.ceiling:
                        # below the static bound the head may overshoot the adaptive one (by
                        # one request): a bound under a large request's cost must not stall it
                        c = fq._heap[0][2].queue[0].cost
                        if c > room:
                            room = c
                budget = room * scale
                if avail < budget:
                    budget = avail
            else:
                budget = avail
            sl = self.config.dispatch_slice
            if sl and budget > sl * b.limit:
                # a slice, but never less than the next request: one larger than a slice must
                # still go (its cost is capped at the bucket's size)
                head = fq._heap[0][2].queue[0].cost * scale
                cut = sl * b.limit
                budget = cut if cut >= head else min(budget, head if head < b.limit else b.limit)
            if budget <= 0.0:
                # (held by the parts alone when they leave no room at all, whatever the tokens)
                fq.parts_held = rooms is not None and self._bound_in_disk and room <= 0.0
                if sh is not None:
                    for e in fq._heap:
                        sh.mark(self._slot(e[2]), now)  # waiting for tokens or room
                return []
            if sh is not None:
                before_acc = [(e[2], e[2].accumulated) for e in fq._heap]
            # _EPS: a bucket refilled to exactly n costs must not miss the n-th to rounding
            hold = self._anticipated() if self.config.anticipate else None
            left = fq.dispatch(out, budget + _EPS, scale, b.limit, now, n, rooms, hold,
                               self.config.share_hold) - _EPS
            if sh is None:
                b.tokens = avail - (budget - left)
            else:
                sh.consume(budget - left)
                for cls, acc in before_acc:
                    slot = self._slot(cls)
                    if cls.accumulated != acc:
                        sh.charge(slot, cls.accumulated - acc)
                    # what still waits holds back the classes ahead of it on the other shards
                    sh.mark(slot, now if cls.queue else None)
        else:
            fq.dispatch(out, math.inf, 1.0, math.inf, now, n)
        spent = fq.dispatched_cost - before
        if spent:
            self._flow.on_dispatch(spent, now)
        k = len(out)
        self._in_disk += k
        if b is not None:
            for d in out:
                c = d.cost
                self._in_disk_cost += c
                d.io_class.in_disk_cost += c
            if sh is not None and k:
                sh.publish(self._in_disk_cost)
        return out

    def complete(self, dispatch: QueuedRequest, result: int, now: float) -> QueuedRequest | None:
        """Record a completion (``result``: bytes done, or a negative errno).

        Returns the request when it is done: the dispatch itself, or for a part, the parent
        once its last part completes (then ``parent.result`` is the sum of the part results
        up to the first short part, or the first error among the parts). Else None.
        """
        cls = dispatch.io_class
        self._fq.parts_held = False  # room in its class's part
        n = cls.nr_executing = cls.nr_executing - 1
        td: float = dispatch.dispatched_at  # type: ignore[assignment]  # set when it was dispatched
        cls.total_exec_time += now - td
        if not n and cls.nr_queued:
            cls._activated_at = now
        self._in_disk -= 1
        c = dispatch.cost
        if self._bucket is not None:
            self._in_disk_cost -= c
            cls.in_disk_cost -= c
            if self._shared is not None:  # the other shards' room grows now, not at our next dispatch
                self._shared.publish(self._in_disk_cost)
            knee = self._knee
            if knee is not None:  # _Knee.sample, inlined
                lat = now - td
                if lat > 0.0:
                    e = _frexp(c)[1]
                    m = knee.mins.get(e)
                    if m is None or lat < m:
                        knee.mins[e] = m = lat
                    knee.g += m / lat
                    knee.n += 1
                if now >= knee.next:
                    knee.update(now)
        # FlowMonitor.on_complete, inlined
        flow = self._flow
        flow.completed += c
        if td != flow._last_td:
            flow._last_td = td
            flow._last_w = _exp((td - flow._t_ref) * flow._inv_tau)
        flow._c += c * flow._last_w
        dispatch.result = result
        if dispatch.__class__ is not RequestPart:
            return dispatch
        parent: SplitRequest = dispatch.request
        parent._pending -= 1
        if parent._pending:
            return None
        total = 0
        short = False
        error = None
        for p in parent.parts:
            r: int = p.result  # type: ignore[assignment]  # every part has completed
            if r < 0:
                error = r
                break
            if not short:
                total += r
                short = r < p.length
        parent.result = error if error is not None else total
        parent.dispatched_at = parent.parts[0].dispatched_at
        return parent

    def _fair_room(self, wf: float) -> int:
        """How many more requests may go to the disk under ``fair_wait_fraction`` (a large
        number while fewer than two classes are busy)."""
        busy = 0
        queued = 0
        for c in self._classes.values():
            if c.nr_queued or c.nr_executing:
                busy += 1
                queued += c.nr_queued
        if busy < 2:
            return 1 << 62
        # in the disk <= (1 - wf) x (in the disk + queued); with nothing in the disk, at least one
        k = int((1.0 - wf) * (self._in_disk + queued)) - self._in_disk
        return k if k > 0 or self._in_disk else 1

    # -- shards sharing the disk (iosched.io_group) ---------------------------------------

    def _slot(self, cls: IoClassState) -> int:
        slot = self._slots.get(cls.name)
        if slot is None:
            assert self._shared is not None
            slot = self._slots[cls.name] = self._shared.class_slot(cls.name)
        return slot

    def _too_far_ahead(self, cls: IoClassState, now: float, tokens: float) -> bool:
        """True if ``cls`` must wait: the disk is contended and the class is more than
        ``group_lead`` ahead of the least-served class with requests waiting on any shard."""
        sh = self._shared
        b = self._bucket
        assert sh is not None and b is not None
        cfg = self.config
        cap = b.limit
        inv = cls._inv_shares
        goal = cap / b.rate
        lead, waiting = sh.lead(self._slot(cls), now, cfg.group_window * goal, cfg.group_forgiveness * cap * inv)
        if not waiting or lead <= cfg.group_lead * cap * inv:
            return False
        short = cfg.group_contended * cap
        return tokens < short or self._in_disk_limit - self._in_disk_cost - self._others < short

    def _hold_leaders(self, now: float, tokens: float) -> bool:
        """Hold the queued classes that are too far ahead (see ``_too_far_ahead``) for
        ``group_hold`` latency goals; True if nothing is left to dispatch."""
        fq = self._fq
        b = self._bucket
        assert b is not None
        hold = []
        for e in fq._heap:
            if self._too_far_ahead(e[2], now, tokens):
                hold.append(e[2])
        if hold:
            until = now + self.config.group_hold * b.limit / b.rate
            sh = self._shared
            assert sh is not None
            for cls in hold:
                fq.hold(cls, until)
                sh.mark(self._slot(cls), now)  # held, it still waits
        return not fq._heap

    # -- anticipation (IoQueueConfig.anticipate) -----------------------------------------------

    def _anticipated(self) -> float:
        """The least accumulator among the classes with requests in the disk and none queued
        (their tasks are about to queue more); infinity if none. Classes with a limit are left
        out: their own buckets, not their tasks, decide when they come back."""
        least = _INF
        for c in self._classes.values():
            if c.nr_executing and not c._active and c._bw is None and c._iops is None and c.accumulated < least:
                least = c.accumulated
        return least

    # -- the in-disk bound split by shares (IoQueueConfig.share_in_disk) ---------------------

    def _class_rooms(self, also: IoClassState | None = None) -> dict[IoClassState | None, float] | None:
        """What each busy class may still put in the disk (unscaled cost): under the class, its
        part of the bound (bound x its shares / the busy classes' shares) less what it has
        there; under None, what the classes lend and the others have not borrowed yet (see
        FairQueue.dispatch). None while fewer than two classes are busy (queued or in the
        disk). ``also`` counts as busy (a class about to dispatch).

        A part is lent only beyond ``share_lend_headroom`` x its class's peak demand (in the
        disk + queued) over the current and the last window: lending what a class leaves
        free at the moment let the small class fill every gap the large one's tasks left
        between requests (1.9:1 instead of 4:1 on the real disk; docs/scheduler.md)."""
        busy = []
        total = 0.0
        for c in self._classes.values():
            if c.nr_queued or c.nr_executing or c is also:
                busy.append(c)
                total += c.shares
        if len(busy) < 2:
            return None
        limit = self._in_disk_limit
        bound = limit if limit < self._share_limit else self._share_limit
        per_share = bound / total
        win = int(self._now * self._lend_rate)
        follow = self.config.share_follow_demand
        peaks = []
        offered = 0.0
        for c in busy:
            d = c.in_disk_cost
            q = c.queue
            demand = d + len(q) * q[0].cost if q else d
            if c.peak_window != win:  # a new window: the last one's peak moves back
                last = c.peak_window == win - 1
                c.peak_prev = c.peak_demand if last else 0.0
                c.window_consumed = c.consumption - c.window_mark if last else -1.0
                c.window_mark = c.consumption
                ops = c.ops[0] + c.ops[1]
                if ops - c.ops_mark >= _FED_MIN_OPS:
                    c.window_fed = (c.fed[0] - c.fed_mark) / (ops - c.ops_mark)
                    c.ops_mark = ops
                    c.fed_mark = c.fed[0]
                c.peak_demand = demand
                c.peak_window = win
            elif demand > c.peak_demand:
                c.peak_demand = demand
            peak = c.peak_demand if c.peak_demand > c.peak_prev else c.peak_prev
            peaks.append(peak)
            offered += peak
        leader = None
        if follow < 1.0:
            per_offered = offered / total
            top = top2 = 0.0  # the two largest peaks
            for peak in peaks:
                if peak > top:
                    top, top2 = peak, top
                elif peak > top2:
                    top2 = peak
            for c, peak in zip(busy, peaks):
                part = per_share * c.shares
                # its share of the bound, or of what the busy classes offer together when that
                # is less (the bound far above what the engine pushes), but no more than the
                # largest other class offers (what a class as busy as the others has)
                fair = per_offered * c.shares
                other = top2 if peak == top else top
                if other < fair:
                    fair = other
                if follow * (fair if fair < part else part) <= peak < part and c.window_fed >= _FED_LEADS:
                    # filling what it can: the bound is what its demand is the share of
                    b = peak * total / c.shares
                    if b < bound:
                        bound = b
                        leader = c
            if leader is not None and self._follow_window != win:
                self._follow_window = win
                self._follow_rescale(leader, busy)
        per_share = bound / total
        scale = self._follow_scale
        headroom = self.config.share_lend_headroom
        rooms: dict[IoClassState | None, float] = {}
        lent = 0.0
        over = leader is not None and self._follow_credit < 0.0
        for c, peak in zip(busy, peaks):
            part = per_share * c.shares
            if leader is not None and c is not leader:
                part *= scale
            d = c.in_disk_cost
            spare = part - headroom * peak
            if spare > 0.0:
                lent += spare
            if d > part:
                lent -= d - part  # borrowed already
            # a part smaller than one request: one may go while the class has nothing in the
            # disk, but not while the others have had more than their share (so it is in the
            # disk part of the time, as its part is)
            rooms[c] = _NO_OVERSHOOT if over and c is not leader and not c.nr_executing else part - d
        rooms[None] = lent
        return rooms

    def _follow_rescale(self, leader: IoClassState, busy: list[IoClassState]) -> None:
        """Once a window, while ``leader``'s demand sizes the split bound: scale the others'
        parts by the square root of how far their last window's consumption per share was
        from the leader's. The leader's tasks are not all in the disk at once (they wait for
        the engine between requests), and a part is whole requests, so parts in proportion
        to its peak leave the others more than their share; this closes the gap from what
        each class got."""
        mine = leader.window_consumed
        if mine <= 0.0:
            return
        got = 0.0
        shares = 0.0
        for c in busy:
            if c is not leader:
                if c.window_consumed < 0.0:
                    return  # a class new to the window: nothing to compare yet
                got += c.window_consumed
                shares += c.shares
        # what the others' shares entitled them to next to what the leader got; the difference
        # adds up (bounded) and decides whether a part under one request may overshoot
        owed = mine / leader.shares * shares
        credit = self._follow_credit + owed - got
        self._follow_credit = -4.0 * owed if credit < -4.0 * owed else owed if credit > owed else credit
        if got <= 0.0:
            return
        s = self._follow_scale * math.sqrt(owed / got)
        self._follow_scale = _FOLLOW_MIN if s < _FOLLOW_MIN else _FOLLOW_MAX if s > _FOLLOW_MAX else s

    # -- direct grants (a lone class skips the queue) ----------------------------------------

    def open_grant(self, io_class: IoClassState, now: float, empty_ok: bool = False) -> DirectGrant | None:
        """A grant for ``io_class`` to dispatch at ``now`` without queueing (see DirectGrant).

        None when the class must queue: other requests wait in the queue (fair order
        decides), the class has a bandwidth or IOPS limit, or no tokens (or no room in the
        disk) are left. ``empty_ok``: when only the room is missing and requests of the class
        are in the disk, an empty grant their completions refill (refill_grant) instead.
        """
        cls = io_class
        if cls._owner is not self:
            raise ValueError(f"io class {cls.name!r} does not belong to this queue (removed, or another disk's)")
        fq = self._fq
        if cls.queue or cls._bw is not None or cls._iops is not None:
            return None
        self._now = now  # (the parts' demand windows count in it)
        if self.config.anticipate and cls.accumulated > self._anticipated():
            return None  # another class is about to queue, and it is behind this one
        rooms = None
        if self._share:
            # Others busy (waiting or in the disk): the class may still fill its own part of the
            # bound directly, the others' parts being theirs (the fair queue orders each part)
            rooms = self._class_rooms(cls)
        if fq._heap and rooms is None:
            return None
        if self.config.fair_wait_fraction:
            for c in self._classes.values():
                if c is not cls and (c.nr_queued or c.nr_executing):
                    return None  # another class is busy: the fair queue decides who goes
        self._now = now
        b = self._bucket
        if b is None:
            return DirectGrant(self, cls, now, _INF, 1.0)
        sh = self._shared
        if sh is None:
            # TokenBucket.replenish, inlined: a grant is opened once per loop turn
            dt = now - b.last
            if dt > 0:
                t = b.tokens + dt * b.rate
                b.tokens = t if t < b.limit else b.limit
                b.last = now
            budget = b.tokens + self._overdraw
        else:
            budget, self._others = sh.sync(now, self._in_disk_cost)
            self._synced = (now, budget)
            if self._too_far_ahead(cls, now, budget):
                return None
        scale = self._flow.scale(now)
        refill = 0.0
        if self._bound_in_disk:
            room = (self._in_disk_limit - self._in_disk_cost - self._others) * scale
            if rooms is not None:
                # its part, even where the others are over theirs, and what is lent
                mine, lent = rooms[cls], rooms[None]
                room = ((mine if mine > 0.0 else 0.0) + (lent if lent > 0.0 else 0.0)) * scale
            if room < budget:
                # Held by the room, not the tokens: what its own requests in the disk give back
                # as they complete is its room again (refill_grant), up to those tokens. Not on
                # a disk shared with other shards, whose room moves with theirs.
                if sh is None:
                    refill = budget - (room if room > 0.0 else 0.0)
                budget = room
                if self._knee is not None:
                    self._knee.hit = True
        if budget <= _EPS:
            if empty_ok and refill > 0.0 and cls.nr_executing:
                # no room now, but its requests in the disk will make some: an empty grant they
                # refill keeps the class off the queue's path meanwhile
                g = DirectGrant(self, cls, now, 0.0, scale)
                g.refill = refill / scale
                return g
            return None
        # the grant counts in unscaled cost, as the queue's in-disk bound does
        g = DirectGrant(self, cls, now, budget / scale + _EPS, scale)
        g.refill = refill / scale
        return g

    def refill_grant(self, grant: DirectGrant, done: DirectGrant, count: int) -> float:
        """``count`` requests taken under ``done`` (this grant or an earlier one) completed and are
        not booked yet: if ``done`` is of ``grant``'s class, the room they held in the disk is
        that class's again, so ``grant`` may take their cost once more, within its ``refill``
        (the tokens it was opened with beyond its room). The books are unchanged: commit_grant
        books what the grant took, complete_grant the completions. Returns the cost given back."""
        if done.io_class is not grant.io_class or grant.committed or not done.n:
            return 0.0
        x = count * (done.opened_with - done.budget) / done.n
        r = grant.refill
        if x > r:
            x = r
        grant.budget += x + _EPS  # (the mean's rounding must not cost a request)
        grant.opened_with += x + _EPS
        grant.refill = r - x
        return x

    def commit_grant(self, grant: DirectGrant) -> None:
        """Book what was taken under ``grant`` as one dispatch at ``grant.at``."""
        if grant.committed:
            return
        grant.committed = True
        n = grant.n
        if not n:
            return
        spent = grant.opened_with - grant.budget
        now = grant.at
        cls = grant.io_class
        fq = self._fq
        inv = cls._inv_shares
        acc = cls.accumulated
        if not cls._active:  # it was idle: no credit beyond the forgiveness (as _activate)
            floor = fq.vtime - fq.forgiveness * inv
            if acc < floor:
                acc = floor
            cls.activations += 1
        last = acc + (spent - spent / n) * inv  # the accumulator before the last request
        if last > fq.vtime:
            fq.vtime = last
        cls.accumulated = acc + spent * inv
        if cls._active:  # in the heap again: work it queued after the grant opened
            heap = fq._heap
            for i, e in enumerate(heap):
                if e[2] is cls:
                    heap[i] = (cls.accumulated, e[1], cls)
            heapify(heap)
        cls.consumption += spent
        cls.nr_executing += n
        fq.dispatched_cost += spent
        self._flow.on_dispatch(spent, now)
        self._in_disk += n
        b = self._bucket
        if b is not None:
            self._in_disk_cost += spent
            d = cls.in_disk_cost = cls.in_disk_cost + spent
            if self._share and cls.peak_window == int(now * self._lend_rate) and d > cls.peak_demand:
                # its demand at its highest (all it took is in the disk now): a peak the parts
                # count (_class_rooms samples it after completions, when it is at its lowest)
                cls.peak_demand = d
            sh = self._shared
            if sh is None:
                b.tokens -= spent * grant.scale
            else:
                sh.consume(spent * grant.scale)
                slot = self._slot(cls)
                sh.charge(slot, spent * inv)
                if not cls.queue:
                    sh.mark(slot, None)  # served at once: nothing of it waits
                sh.publish(self._in_disk_cost)

    def complete_grant(self, grant: DirectGrant, count: int, now: float) -> None:
        """Book ``count`` completions of requests taken under ``grant`` (committed)."""
        if not grant.committed:
            raise RuntimeError("commit a grant before booking its completions")
        self._fq.parts_held = False  # less in the disk: what others may borrow may have grown
        done = grant.completed + count
        if done > grant.n:
            raise ValueError(f"{done} completions booked for a grant of {grant.n} requests")
        spent = grant.opened_with - grant.budget
        # Costs of a grant's requests are known only as a sum: completions are charged the
        # mean, and the last one the rest, so the books balance exactly once all are in.
        c = spent - grant.completed_cost if done == grant.n else count * spent / grant.n
        grant.completed = done
        grant.completed_cost += c
        cls = grant.io_class
        n = cls.nr_executing = cls.nr_executing - count
        cls.total_exec_time += count * (now - grant.at)
        if not n and cls.nr_queued:
            cls._activated_at = now
        self._in_disk -= count
        if self._bucket is not None:
            self._in_disk_cost -= c
            cls.in_disk_cost -= c
            if self._shared is not None:  # the other shards' room grows now, not at our next dispatch
                self._shared.publish(self._in_disk_cost)
            if self._knee is not None and count:
                self._knee.sample(spent / grant.n, now - grant.at, count, now)
        self._flow.on_complete(c, grant.at)

    def cancel(self, request: QueuedRequest) -> bool:
        """Remove a request none of whose parts was dispatched; False if too late (or done)."""
        parent = request.request
        units = parent.parts if parent.parts is not None else [parent]
        if any(u.dispatched_at is not None for u in units) or parent.result is not None:
            return False
        cls = parent.io_class
        for u in units:
            try:
                self._fq.remove(cls, u)
            except ValueError:  # already cancelled
                return False
        return True

    def next_dispatch_time(self, now: float) -> float | None:
        """When ``dispatch`` can hand out something next: ``now`` if it can right away, a
        later time if tokens or a class limit hold it back, ``math.inf`` if only a completion
        can make room (the disk holds the goal's worth), None if nothing is queued."""
        fq = self._fq
        t = fq.next_unthrottle
        if t != math.inf:  # only a throttled class with work waiting needs a wake-up
            t = min((c._throttled_until for c in fq._throttled if c.queue), default=math.inf)
        head = fq.head()
        if head is not None and fq.parts_held:
            return t  # every waiting class is over its part: a completion makes room (or a limit ends)
        if head is not None:
            wf = self.config.fair_wait_fraction
            if wf and self._fair_room(wf) <= 0:
                return t if t > now else now  # t is inf unless a class limit ends sooner: a completion makes room
            b = self._bucket
            if b is None:
                return now
            if self._bound_in_disk:
                room = self._in_disk_limit - self._in_disk_cost - self._others
                if head.cost > room + _EPS:
                    knee = self._knee
                    if knee is None or room <= _EPS or self._in_disk_limit >= knee.ceiling:
                        if self._shared is not None:
                            # other shards' completions make room too, and they do not wake
                            # this shard: look again shortly
                            return now + self.config.group_hold * b.limit / b.rate
                        return _INF  # the disk is full: only a completion makes room
            c = head.cost * self._flow.scale(now)
            if c > b.limit:
                c = b.limit
            sh = self._shared
            if sh is None:
                t2 = b.next_available(c, now)
            else:
                # from what dispatch saw (another shard may have replenished since): "now"
                # must mean that dispatch at now would have sent the head
                at, have = self._synced
                t2 = now if have >= c else at + (c - have) / b.rate
                if have < c and t2 <= now:
                    t2 = math.nextafter(now, math.inf)  # as TokenBucket.next_available: never "now" when short
            if t2 < t:
                t = t2
        if t == math.inf:
            return None
        return t if t > now else now

    # -- introspection ------------------------------------------------------------------

    @property
    def capacity(self) -> float:
        """The token bucket's size in disk-seconds (inf without properties)."""
        return self._bucket.limit if self._bucket is not None else math.inf

    @property
    def tokens(self) -> float:
        """Tokens in the bucket (shared by the shards with ``shared``; inf without properties)."""
        if self._bucket is None:
            return math.inf
        return self._shared.tokens() if self._shared is not None else self._bucket.tokens

    @property
    def shared(self) -> bool:
        """True when the bucket, the in-disk bound and the shares are kept with other shards."""
        return self._shared is not None

    @property
    def max_request_length(self) -> tuple[float, float]:
        """Longest (read, write) request that is not split (inf without properties)."""
        return (self._max_len[READ], self._max_len[WRITE])

    @property
    def flow_ratio(self) -> float:
        """Dispatched/completed cost over the recent window (see FlowMonitor)."""
        return self._flow.ratio_at(self._now)

    @property
    def cost_scale(self) -> float:
        """The back-off multiplier applied to costs (1.0 while the disk keeps up)."""
        return self._flow.scale(self._now) if self._bucket is not None else 1.0

    @property
    def in_disk_cost(self) -> float:
        """Unscaled cost (disk-seconds) dispatched and not completed (0 without properties)."""
        return self._in_disk_cost

    @property
    def in_disk_bound(self) -> float:
        """The bound on ``in_disk_cost`` in force now (unscaled disk-seconds; inf if none)."""
        return self._in_disk_limit if self._bound_in_disk else math.inf

    @property
    def queued(self) -> int:
        """Requests (parts) waiting in the scheduler."""
        return sum(c.nr_queued for c in self._classes.values())

    @property
    def in_disk(self) -> int:
        """Requests (parts) dispatched and not completed."""
        return self._in_disk

    def _label(self) -> str:
        return f"disk {self.properties.mountpoint!r}" if self.properties is not None else "an unconfigured disk"

    def metrics(self) -> dict[str, Any]:
        """Counters and gauges as plain data: ``{"queue": {...}, "classes": {name: {...}}}``."""
        flow = self._flow
        classes = {}
        for name, c in self._classes.items():
            classes[name] = {
                "shares": c.shares,
                "read_ops": c.ops[READ], "read_bytes": c.bytes[READ],
                "write_ops": c.ops[WRITE], "write_bytes": c.bytes[WRITE],
                "split_ops": c.split_ops, "split_bytes": c.split_bytes,
                "queue_length": c.nr_queued,
                "disk_queue_length": c.nr_executing,
                "total_queue_delay": c.total_queue_delay,
                "total_exec_time": c.total_exec_time,
                "starvation_time": c.starvation_time,
                "consumption": c.consumption,
                "adjusted_consumption": c.accumulated,
                "activations": c.activations,
                "bandwidth_limit": c.bandwidth_limit,
                "iops_limit": c.iops_limit,
                "throttled": c.throttled,
            }
        return {
            "queue": {
                "mountpoint": self.properties.mountpoint if self.properties is not None else None,
                "throttling": self.throttling,
                "shared": self.shared,
                "queue_length": self.queued,
                "disk_queue_length": self._in_disk,
                "dispatched_cost": flow.dispatched,
                "completed_cost": flow.completed,
                "flow_ratio": self.flow_ratio,
                "cost_scale": self.cost_scale,
                "capacity": self.capacity,
                "tokens": self.tokens,
                "max_read_length": self._max_len[READ],
                "max_write_length": self._max_len[WRITE],
            },
            "classes": classes,
        }
