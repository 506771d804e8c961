"""The cost model: how many disk-seconds a request uses.

A disk calibrated at ``iops`` requests/s and ``bw`` bytes/s for a direction can do one
request of ``length`` bytes in

* ``additive``:  1/iops + length/bw      -- Seastar's model (doc/io-scheduler.md: the four
  fractions of the disk's limits add up to at most 1).
* ``max``:       max(1/iops, length/bw)  -- a request is limited either by the per-request
  overhead or by the transfer, not by both at once. The additive form charges a 4 KiB
  read on a fast NVMe for both its IOPS and its bytes, so a disk saturated with small
  reads looks only ~60-70 % busy to the scheduler and never gets its calibrated IOPS
  (seastar#2771).

The unit is one second of the whole disk: a token bucket refilled at 1.0 per second keeps
the disk exactly busy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Final, Literal

from .properties import DiskProperties


def _interpolate(t: tuple[tuple[int, float], ...], length: int) -> float:
    n0, c0 = t[0]
    if length <= n0:
        return c0
    for n1, c1 in t[1:]:
        if length <= n1:
            return c0 + (c1 - c0) * (length - n0) / (n1 - n0)
        n0, c0 = n1, c1
    return c0 * length / n0  # beyond the largest size measured: its cost per byte


def _inverse(t: tuple[tuple[int, float], ...], budget: float) -> float:
    """The largest length whose interpolated cost is at most ``budget`` (costs grow with length)."""
    n0, c0 = t[0]
    if budget < c0:
        return 0.0
    for n1, c1 in t[1:]:
        if budget < c1:
            return n0 + (n1 - n0) * (budget - c0) / (c1 - c0) if c1 > c0 else float(n1)
        n0, c0 = n1, c1
    return budget * n0 / c0

__all__ = ["READ", "WRITE", "COST_FORMS", "DEFAULT_COST_FORM", "CostForm", "CostModel"]

READ: Final = 0
WRITE: Final = 1

CostForm = Literal["max", "additive"]
COST_FORMS: Final = ("max", "additive")

# "max", chosen by measurement: `python -m ioengine.bench.costmodel` saturates the disk at
# each size from 4 KiB to 1 MiB and checks what each form charges (ideal: the whole disk).
# On this project's virtio disk (2026-11-28, 3 sweeps) the additive form charged 1.2-2.2x
# the disk for reads of 8 KiB-512 KiB (mean |log| error 0.37) against max's 0.76-2.15x (0.26);
# for writes the two tied (0.15 each). Overcharging throttles the disk below its capacity
# for good; undercharging is caught by the flow-ratio back-off. Keep the choice here only.
DEFAULT_COST_FORM: CostForm = "max"


class CostModel:
    """Cost in disk-seconds of a request, from a disk's calibrated rates.

    ``cost(direction, length)`` is on the scheduler's hot path: the reciprocals are
    precomputed and the method does one multiply and one add/max.
    """

    __slots__ = ("form", "properties", "_inv_iops", "_inv_bw", "_tables", "cost")

    def __init__(self, properties: DiskProperties, form: CostForm = DEFAULT_COST_FORM) -> None:
        if form not in COST_FORMS:
            raise ValueError(f"unknown cost form {form!r}; expected one of {COST_FORMS}")
        self.form: CostForm = form
        self.properties = properties
        # index by direction: READ=0, WRITE=1
        self._inv_iops = (1.0 / properties.read_iops, 1.0 / properties.write_iops)
        self._inv_bw = (1.0 / properties.read_bandwidth, 1.0 / properties.write_bandwidth)
        # measured per-size costs, by direction: ((length, seconds), ...) or None
        self._tables = tuple(
            tuple((n, 1.0 / iops) for n, iops in t) if t is not None else None
            for t in (properties.read_iops_by_size, properties.write_iops_by_size)
        )
        # ``cost(direction, length) -> float``: a closure with the rates in cells and the
        # form chosen once, so the per-request call does no attribute lookups or form test.
        self.cost = self.cost_function()

    def cost_function(self) -> Callable[[int, int], float]:
        """A closure ``f(direction, length) -> float`` (what ``self.cost`` is)."""
        if self._tables[0] is not None or self._tables[1] is not None:
            return self._table_cost_function()
        ri, wi = self._inv_iops
        rb, wb = self._inv_bw
        if self.form == "max":
            def cost(direction: int, length: int) -> float:
                if direction:
                    b = length * wb
                    return wi if wi > b else b
                b = length * rb
                return ri if ri > b else b
        else:
            def cost(direction: int, length: int) -> float:
                if direction:
                    return wi + length * wb
                return ri + length * rb
        return cost

    def _table_cost_function(self) -> Callable[[int, int], float]:
        """Costs from the sizes measured (``*_iops_by_size``): 1/iops at a measured size,
        linear in the length between two of them, the smallest's below them, and beyond the
        largest, its cost per byte. A direction without a table keeps the form's cost."""
        plain = CostModel(replace(self.properties, read_iops_by_size=None, write_iops_by_size=None),
                          self.form).cost
        tables = self._tables

        def cost(direction: int, length: int) -> float:
            t = tables[direction]
            if t is None:
                return plain(direction, length)
            return _interpolate(t, length)
        return cost

    def max_length(self, direction: int, budget: float) -> float:
        """The largest length (bytes, unrounded) whose cost is at most ``budget`` disk-seconds.

        0.0 when even an empty request costs more than the budget.
        """
        t = self._tables[direction]
        if t is not None:
            return _inverse(t, budget)
        inv_iops = self._inv_iops[direction]
        if budget < inv_iops:
            return 0.0
        bw = 1.0 / self._inv_bw[direction]
        if self.form == "max":
            return budget * bw
        return (budget - inv_iops) * bw

    def __repr__(self) -> str:
        p = self.properties
        return (
            f"CostModel(form={self.form!r}, read={p.read_iops:g} IOPS/{p.read_bandwidth:g} B/s, "
            f"write={p.write_iops:g} IOPS/{p.write_bandwidth:g} B/s)"
        )
