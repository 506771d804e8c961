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
        return now + (cost - t) / self.rate

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

    Every ``period`` seconds the ratio of cost dispatched to cost completed during the period
    is folded into an exponential moving average (``ratio``), as in Seastar.

    Seastar then multiplies costs by ``ratio`` itself. That only half-corrects a disk that
    is slower than calibrated: with the disk k times slower, the average settles where
    ``ratio = k / ratio``, i.e. at sqrt(k), and the disk's queue grows without bound. So here
    the multiplier (``scale``) integrates: each period whose average is above ``threshold``
    multiplies ``scale`` by the period's own ratio, which converges to k in a few periods;
    while the disk keeps up (ratio at or below 1) ``scale`` relaxes back toward 1 by
    ``relax`` per period, so a disk that recovers gets its throughput back. The queue built
    up before the back-off engaged drains through the overshoot of the integrator.
    """

    __slots__ = (
        "threshold", "ema_factor", "period", "relax", "max_scale",
        "ratio", "scale", "dispatched", "completed",
        "_prev_dispatched", "_prev_completed", "_next_update",
    )

    def __init__(
        self,
        *,
        threshold: float,
        ema_factor: float,
        period: float,
        relax: float,
        max_scale: float,
        now: float = 0.0,
    ) -> None:
        self.threshold = threshold
        self.ema_factor = ema_factor
        self.period = period
        self.relax = relax
        self.max_scale = max_scale
        self.ratio = 1.0
        self.scale = 1.0
        self.dispatched = 0.0  # total cost dispatched (unscaled disk-seconds)
        self.completed = 0.0  # total cost completed
        self._prev_dispatched = 0.0
        self._prev_completed = 0.0
        self._next_update = now + period

    def update(self, now: float) -> float:
        """Fold in the periods that ended by ``now``; returns the cost multiplier (>= 1)."""
        if now < self._next_update:
            return self.scale
        self._next_update = now + self.period
        done = self.completed - self._prev_completed
        if done <= 0.0:
            # Nothing completed: either idle (nothing to learn) or the disk is stalled, which
            # the next period with completions will show as a large ratio.
            return self.scale
        instant = (self.dispatched - self._prev_dispatched) / done
        self._prev_dispatched = self.dispatched
        self._prev_completed = self.completed
        f = self.ema_factor
        self.ratio = self.ratio * f + instant * (1.0 - f)
        if self.ratio > self.threshold and instant > 1.0:
            s = self.scale * instant
            self.scale = s if s < self.max_scale else self.max_scale
        elif instant <= 1.0 and self.scale > 1.0:
            s = self.scale * self.relax
            self.scale = s if s > 1.0 else 1.0
        return self.scale
