"""One disk, many shards: iosched's shared disk state in the shards' shared memory.

Every shard's reactor keeps its own io queue per disk; with io_properties, the queues of one
disk take their tokens from one bucket, bound what is in the disk by what all shards have
there, and keep io class shares in aggregate (iosched.io_group says how). Here that state lives
in a memfd mapped by every shard and is updated with atomic operations (native/io_group.c):
per disk one slot, claimed by its device id; per class one entry, claimed by a hash of its name.
"""
from __future__ import annotations

import hashlib
import mmap
from typing import Any

from .._native import ffi, lib

#: Disks one run's shards may share (a disk beyond that is throttled per shard, with a warning).
DISK_SLOTS = 16


def group_bytes() -> int:
    """Bytes of shared memory the io group needs."""
    return -(-DISK_SLOTS * int(lib.ie_group_disk_bytes()) // mmap.PAGESIZE) * mmap.PAGESIZE


class ShmIoGroup:
    """This shard's view of the run's io group (``disk(dev)`` for DiskQueues)."""

    def __init__(self, memfd: int, offset: int, shard: int, count: int) -> None:
        self.shard = shard
        self.count = count
        self._mm = mmap.mmap(memfd, group_bytes(), offset=offset)  # MAP_SHARED
        self._base = ffi.from_buffer(self._mm)

    def disk(self, dev: int) -> ShmDisk | None:
        """This shard's handle on disk ``dev``; None when every slot holds another disk."""
        d = lib.ie_group_disk(self._base, DISK_SLOTS, dev)
        return None if d == ffi.NULL else ShmDisk(d, self.shard, self.count, self)


class ShmDisk:
    """iosched.SharedDisk over one slot of the shared memory."""

    __slots__ = ("_d", "_shard", "_count", "_rate", "_limit", "_out", "_act", "_keep")

    def __init__(self, d: Any, shard: int, count: int, keep: ShmIoGroup) -> None:
        self._d = d
        self._shard = shard
        self._count = count
        self._rate = 1.0
        self._limit = 0.0
        self._out = ffi.new("double[1]")
        self._act = ffi.new("int[1]")
        self._keep = keep  # the mapping lives as long as its users

    def bind(self, rate: float, limit: float, now: float) -> None:
        self._rate = rate
        self._limit = limit
        lib.ie_group_fill(self._d, limit, int(now * 1e9))

    def sync(self, now: float, in_disk: float) -> tuple[float, float]:
        t = lib.ie_group_sync(self._d, self._shard, self._count, int(now * 1e9), self._rate, self._limit, in_disk,
                              self._out)
        return t, self._out[0]

    def publish(self, in_disk: float) -> None:
        lib.ie_group_publish(self._d, self._shard, in_disk)

    def tokens(self) -> float:
        return float(lib.ie_group_tokens(self._d))

    def consume(self, cost: float) -> None:
        lib.ie_group_consume(self._d, cost)

    def class_slot(self, name: str) -> int:
        h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") | 1
        slot = int(lib.ie_group_class(self._d, h))
        if slot < 0:
            raise RuntimeError(f"io class {name!r}: the shards' shared disk state holds "
                               f"{lib.IE_GROUP_MAX_CLASSES} io classes per disk at most")
        return slot

    def charge(self, slot: int, per_share: float) -> None:
        lib.ie_group_charge(self._d, slot, per_share)

    def mark(self, slot: int, since: float | None) -> None:
        lib.ie_group_mark(self._d, slot, 0 if since is None else max(1, int(since * 1e9)))

    def lead(self, slot: int, now: float, window: float, floor_lag: float) -> tuple[float, int]:
        lead = lib.ie_group_lead(self._d, slot, int(now * 1e9), int(window * 1e9), floor_lag, self._act)
        return lead, self._act[0]
