"""Token buckets and the flow-ratio back-off.

``TokenBucket`` is the single-shard form of Seastar's shared token bucket: tokens are
replenished at ``rate`` per second up to ``limit``; a grab may drive the bucket into
deficit (negative tokens), which later replenishment pays back before anything else can
be grabbed. Time is always an argument (seconds, any monotonic origin).

``FlowMonitor`` watches the ratio of cost dispatched to cost completed (Seastar's
"flow ratio", doc/io-scheduler.md): a ratio persistently above 1 means the disk is
accumulating a queue, i.e. it is slower than its calibration says. Costs are then scaled
up to slow the dispatch down.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket", "FlowMonitor"]


class TokenBucket:
    """Tokens refilled continuously at ``rate``/s, capped at ``limit``; may go into deficit."""

    __slots__ = ("rate", "limit", "tokens", "last")

    def __init__(self, rate: float, limit: float, now: float = 0.0, tokens: float | None = None) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"token bucket rate must be a positive finite number, got {rate!r}")
        if not (limit > 0):
            raise ValueError(f"token bucket limit must be positive, got {limit!r}")
        self.rate = float(rate)
        self.limit = float(limit)
        self.tokens = self.limit if tokens is None else float(tokens)
        self.last = now

    def replenish(self, now: float) -> float:
        """Add what accumulated since the last call (capped at ``limit``); returns the tokens."""
        dt = now - self.last
        if dt > 0:  # a clock that steps back adds nothing, and does not move `last` back
            t = self.tokens + dt * self.rate
            self.tokens = t if t < self.limit else self.limit
            self.last = now
        return self.tokens

    def try_grab(self, cost: float, now: float) -> bool:
        """Take ``cost`` tokens if they are all there now. A cost above ``limit`` is capped
        at ``limit`` (it waits for a full bucket and empties it, as in Seastar)."""
        if cost > self.limit:
            cost = self.limit
        if self.replenish(now) >= cost:
            self.tokens -= cost
            return True
        return False

    def grab(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens unconditionally; returns the deficiency (0.0 if none)."""
        self.replenish(now)
        self.tokens -= cost
        return -self.tokens if self.tokens < 0 else 0.0

    def refund(self, cost: float) -> None:
        """Give back tokens grabbed for work that did not happen (still capped at ``limit``)."""
        t = self.tokens + cost
        self.tokens = t if t < self.limit else self.limit

    def deficiency(self, cost: float = 0.0) -> float:
        """Tokens missing for ``cost`` as of the last replenish (0.0 if it fits)."""
        d = cost - self.tokens
        return d if d > 0 else 0.0

    def next_available(self, cost: float, now: float) -> float:
        """The time at which ``cost`` tokens will be there (``now`` if they already are)."""
        if cost > self.limit:
            cost = self.limit
        t = self.replenish(now)
        if t >= cost:
            return now
        at = now + (cost - t) / self.rate
        # A shortfall below what one float step of ``now`` refills rounds to ``now``: the caller
        # would be told "now", find the tokens short again and never be woken (seen with a
        # bucket in deficit at ~40,000 s of loop time). The next representable instant refills it.
        return at if at > now else math.nextafter(now, math.inf)

    def duration_for(self, tokens: float) -> float:
        """Seconds it takes to replenish ``tokens``."""
        return tokens / self.rate

    def update_rate(self, rate: float, now: float, limit: float | None = None) -> None:
        """Change the refill rate (and the limit) from ``now`` on."""
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"token bucket rate must be a positive finite number, got {rate!r}")
        self.replenish(now)
        self.rate = float(rate)
        if limit is not None:
            self.limit = float(limit)
            if self.tokens > self.limit:
                self.tokens = self.limit

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, limit={self.limit:g}, tokens={self.tokens:g})"


class FlowMonitor:
    """Dispatched-to-completed cost ratio and the cost multiplier derived from it.

    Both sums are exponentially weighted by the time the work was *dispatched* (window
    ``tau``): ``ratio`` is "of the cost dispatched recently, how much per unit has completed".
    A disk that keeps up completes what it was handed within its own latency T, and the
    ratio is about exp(T / tau): close to 1. A disk that falls behind grows T, and the ratio
    with it -- also when the application's concurrency is bounded (closed loop), where
    Seastar's per-period dispatched/completed rates settle back to 1 while the disk's queue
    stays long, and also when the shortfall is steady, where Seastar's multiplier settles at
    about sqrt(k) for a disk k times slower than calibrated and its queue grows on.

    The multiplier is ``1 + gain * (ratio - threshold)`` above the threshold (1 below): a
    proportional controller on what is in effect the in-disk time, so a k-times slower disk
    is held at about ``ln(threshold + (k - 1) / gain) * tau`` in the disk (a bound, whatever
    the application's concurrency), and a disk that recovers gets its throughput back at
    once (there is no integrator to unwind).

    The completed sum is floored at ``prior`` disk-seconds per second over the window: after
    an idle spell the window holds almost nothing, and one burst in flight with nothing
    completed yet must not read as a disk falling behind. The floor also means a disk more
    than ``1 / prior`` times slower than calibrated is only partly compensated.
    """

    __slots__ = (
        "threshold", "tau", "gain", "prior", "max_scale",
        "dispatched", "completed", "_d", "_c", "_t_ref", "_inv_tau", "_last_td", "_last_w", "_w_t", "_w",
    )

    def __init__(
        self, *, threshold: float, tau: float, gain: float, prior: float, max_scale: float, now: float = 0.0,
    ) -> None:
        self.threshold = threshold
        self.tau = tau
        self.gain = gain
        self.prior = prior * tau  # floor of the completed sum, in window units
        self.max_scale = max_scale
        self.dispatched = 0.0  # total cost dispatched (unscaled disk-seconds), for metrics
        self.completed = 0.0  # total cost completed
        self._inv_tau = 1.0 / tau
        self._t_ref = now
        self._d = 0.0  # sum of cost * exp((t_dispatch - t_ref) / tau), dispatched
        self._c = 0.0  # the same, over completed work
        self._last_td = now
        self._last_w = 1.0
        self._w_t = now  # cache of the last _weight() call
        self._w = 1.0

    def _weight(self, t: float) -> float:
        if t == self._w_t:  # dispatch() and next_dispatch_time() ask at the same time
            return self._w
        x = (t - self._t_ref) * self._inv_tau
        if x > 40.0:  # rebase before the weights overflow; the ratio is unchanged
            f = math.exp(-x)
            self._d *= f
            self._c *= f
            self._t_ref = t
            self._last_td = t
            self._last_w = 1.0
            w = 1.0
        else:
            w = math.exp(x)
        self._w_t = t
        self._w = w
        return w

    def on_dispatch(self, cost: float, now: float) -> None:
        self.dispatched += cost
        w = self._weight(now)  # first: it may rebase _d
        self._d += cost * w

    def on_complete(self, cost: float, dispatched_at: float) -> None:
        self.completed += cost
        # completions come in runs dispatched together: reuse the last weight
        if dispatched_at != self._last_td:
            self._last_td = dispatched_at
            self._last_w = math.exp((dispatched_at - self._t_ref) * self._inv_tau)
        self._c += cost * self._last_w

    def ratio_at(self, now: float) -> float:
        m = self.prior * self._weight(now)
        c = self._c
        return self._d / (c if c > m else m)

    def scale(self, now: float) -> float:
        """The cost multiplier (>= 1) as of ``now``."""
        m = self.prior * self._weight(now)
        c = self._c
        r = self._d / (c if c > m else m)
        if r <= self.threshold:
            return 1.0
        s = 1.0 + self.gain * (r - self.threshold)
        return s if s < self.max_scale else self.max_scale
