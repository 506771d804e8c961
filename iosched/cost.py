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
from typing import Final, Literal

from .properties import DiskProperties

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

    __slots__ = ("form", "properties", "_inv_iops", "_inv_bw", "cost")

    def __init__(self, properties: DiskProperties, form: CostForm = DEFAULT_COST_FORM) -> None:
        if form not in COST_FORMS:
            raise ValueError(f"unknown cost form {form!r}; expected one of {COST_FORMS}")
        self.form: CostForm = form
        self.properties = properties
        # index by direction: READ=0, WRITE=1
        self._inv_iops = (1.0 / properties.read_iops, 1.0 / properties.write_iops)
        self._inv_bw = (1.0 / properties.read_bandwidth, 1.0 / properties.write_bandwidth)
        # ``cost(direction, length) -> float``: a closure with the rates in cells and the
        # form chosen once, so the per-request call does no attribute lookups or form test.
        self.cost = self.cost_function()

    def cost_function(self) -> Callable[[int, int], float]:
        """A closure ``f(direction, length) -> float`` (what ``self.cost`` is)."""
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

    def max_length(self, direction: int, budget: float) -> float:
        """The largest length (bytes, unrounded) whose cost is at most ``budget`` disk-seconds.

        0.0 when even an empty request costs more than the budget.
        """
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
