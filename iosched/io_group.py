"""One disk, many shards: what the io queues of one disk on several shards share.

Seastar's ``io_group``: every shard has its own ``IoQueue`` for a disk (its own fair queue, its
own classes), but the disk is one, so its capacity is too. A queue given a ``SharedDisk``
(``IoQueue(..., shared=...)``) takes its tokens from a bucket common to all shards and bounds
what is in the disk by what *all* shards have there, so N shards together dispatch what one
would, not N times as much.

Beyond Seastar, whose classes on different shards compete only through the common bucket,
the shared disk also keeps each io class's consumption divided by its shares, summed over the
shards, and when each class was last backlogged. While the disk is contended (its tokens or
its in-disk room short), a class more than ``lead`` ahead of the least-served backlogged class
(on any shard) waits a moment, so shares hold in aggregate: class A (400) on shard 0 and class
B (100) on shard 1 share the disk 4:1, and a class used on two shards gets its share once. A
class that cannot use its share (idle, or its shard's core is the bottleneck) banks at most
``floor_lag`` of credit, as the fair queue's forgiveness does; while the disk is not contended
nobody waits (work conservation).

``IoGroup`` is the in-process implementation (the simulator, tests): its shards are queues in
one process. ioengine's shards are processes; its ``SharedDisk`` keeps the same state in shared
memory with atomic operations (ioengine.smp). Costs are unscaled disk-seconds throughout.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["SharedDisk", "IoGroup", "GroupDisk"]


class SharedDisk(Protocol):
    """One shard's handle on a disk's shared state (see the module docstring)."""

    def bind(self, rate: float, limit: float, now: float) -> None:
        """The bucket's rate (disk-seconds per second) and size; the first shard's start it full."""

    def sync(self, now: float, in_disk: float) -> tuple[float, float]:
        """Replenish to ``now``, publish this shard's in-disk cost; (tokens, other shards' in-disk)."""

    def publish(self, in_disk: float) -> None:
        """Publish this shard's in-disk cost (after a dispatch: the others see it at once)."""

    def tokens(self) -> float:
        """Tokens now (negative in deficit), as of the last replenishment."""

    def consume(self, cost: float) -> None:
        """Take ``cost`` tokens (may run the bucket into deficit)."""

    def class_slot(self, name: str) -> int:
        """The shared slot of the io class ``name`` (the same on every shard)."""

    def charge(self, slot: int, per_share: float) -> None:
        """Add ``cost / shares`` of what a class dispatched to its shared accumulator."""

    def mark(self, slot: int, since: float | None) -> None:
        """The class has requests waiting on this shard (since ``since``), or no longer (None)."""

    def lead(self, slot: int, now: float, window: float, floor_lag: float) -> tuple[float, int]:
        """(How far the class is ahead of the least-served other class with requests waiting,
        marked within ``window``, on any shard: <= 0 if not ahead, 0 if none; how many wait).
        A class more than ``floor_lag`` behind counts as ``floor_lag`` behind, and this class
        raises its own accumulator to ``floor_lag`` behind the most-served waiting one."""


class IoGroup:
    """The shared state of several shards' disks, in one process: ``disk(key, shard)``."""

    def __init__(self, shards: int) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"an io group needs an integer number of shards >= 1, got {shards!r}")
        self.shards = shards
        self._disks: dict[object, _DiskState] = {}

    def disk(self, key: object, shard: int) -> GroupDisk:
        """Shard ``shard``'s handle on the disk ``key`` (e.g. its device id)."""
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < self.shards:
            raise ValueError(f"shard must be an integer in [0, {self.shards}), got {shard!r}")
        st = self._disks.get(key)
        if st is None:
            st = self._disks[key] = _DiskState(self.shards)
        return GroupDisk(st, shard)


class _DiskState:
    __slots__ = ("rate", "limit", "head", "tail", "last", "bound", "in_disk", "names", "acc", "busy")

    def __init__(self, shards: int) -> None:
        self.rate = 0.0
        self.limit = 0.0
        self.head = 0.0  # tokens ever made available
        self.tail = 0.0  # tokens ever taken
        self.last = 0.0
        self.bound = False
        self.in_disk = [0.0] * shards
        self.names: dict[str, int] = {}
        self.acc: list[float] = []
        self.busy: list[float | None] = []


class GroupDisk:
    """One shard's handle on a disk of an ``IoGroup`` (implements ``SharedDisk``)."""

    __slots__ = ("_s", "shard")

    def __init__(self, state: _DiskState, shard: int) -> None:
        self._s = state
        self.shard = shard

    def bind(self, rate: float, limit: float, now: float) -> None:
        s = self._s
        s.rate = rate
        s.limit = limit
        if not s.bound:
            s.bound = True
            s.head = s.tail + limit
            s.last = now

    def sync(self, now: float, in_disk: float) -> tuple[float, float]:
        s = self._s
        if now > s.last:
            room = s.limit - (s.head - s.tail)
            if room > 0.0:
                add = (now - s.last) * s.rate
                s.head += add if add < room else room
            s.last = now
        s.in_disk[self.shard] = in_disk
        return s.head - s.tail, sum(s.in_disk) - in_disk

    def publish(self, in_disk: float) -> None:
        self._s.in_disk[self.shard] = in_disk

    def tokens(self) -> float:
        return self._s.head - self._s.tail

    def consume(self, cost: float) -> None:
        self._s.tail += cost

    def class_slot(self, name: str) -> int:
        s = self._s
        slot = s.names.get(name)
        if slot is None:
            slot = s.names[name] = len(s.acc)
            s.acc.append(0.0)
            s.busy.append(None)
        return slot

    def charge(self, slot: int, per_share: float) -> None:
        self._s.acc[slot] += per_share

    def mark(self, slot: int, since: float | None) -> None:
        self._s.busy[slot] = since

    def lead(self, slot: int, now: float, window: float, floor_lag: float) -> tuple[float, int]:
        s = self._s
        live = [a for i, (a, b) in enumerate(zip(s.acc, s.busy)) if i != slot and b is not None and now - b <= window]
        if not live:
            return 0.0, 0
        most = max(max(live), s.acc[slot])  # the most served, this class included
        if s.acc[slot] < most - floor_lag:  # credit beyond floor_lag is forgiven
            s.acc[slot] = most - floor_lag
        least = min(live)
        if least < most - floor_lag:
            least = most - floor_lag
        return s.acc[slot] - least, len(live)
