"""The reactor's disk queues: one iosched.IoQueue per disk (device id), built from io_properties.

A disk listed in io_properties gets a throttling queue (token bucket, fair queue, splitting);
any other disk gets a queue that orders fairly when the reactor is full but never throttles.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from iosched import DiskProperties, IoClassState, IoQueue, IoQueueConfig, load_io_properties, parse_io_properties

from .io_class import IoClass
from .options import ReactorOptions

log = logging.getLogger(__name__)


def load_properties(options: ReactorOptions) -> list[DiskProperties]:
    """The disks described by ``io_properties`` (YAML text) or ``io_properties_file``."""
    if options.io_properties is not None:
        return parse_io_properties(options.io_properties, source="io_properties")
    if options.io_properties_file is not None:
        return load_io_properties(options.io_properties_file)
    return []


class DiskQueues:
    """Maps files to their disk's queue by device id; holds each queue's io class states."""

    def __init__(self, options: ReactorOptions, now: float) -> None:
        # Bound what the disk holds by the latency goal, not only the rate: a Python engine is
        # often slower than the calibrated disk, and rate-only tokens would then never queue
        # anything, leaving shares without effect (see IoQueueConfig.bound_in_disk).
        cfg: dict[str, Any] = {"bound_in_disk": True, "in_disk_limit": float(options.io_in_disk_goals),
                               "adaptive_in_disk": options.io_adaptive_in_disk,
                               "fair_wait_fraction": options.io_fair_wait_fraction,
                               "share_in_disk": bool(options.io_share_in_disk),
                               "share_in_disk_limit": float(options.io_share_in_disk_goals),
                               "share_follow_demand": float(options.io_share_follow_demand),
                               "anticipate": bool(options.io_anticipate),
                               "dispatch_slice": options.io_dispatch_slice,
                               # a lone class near the calibrated rate keeps its grant through a
                               # loop turn's burst (IoQueueConfig.grant_overdraw_ms): measured with
                               # 32 tasks of 4k reads at iotune's rate, the share of reads that went
                               # the queued way was 45-55 % at 0, 18-24 % at 0.25 ms, 3-5 % at 0.75
                               "grant_overdraw_ms": 0.75}
        if options.io_latency_goal_ms is not None:
            cfg["latency_goal_ms"] = options.io_latency_goal_ms
        self.config = IoQueueConfig(**cfg)
        self._now = now
        self._props: dict[int, DiskProperties] = {}
        for disk in load_properties(options):
            for mp in disk.mountpoints:
                try:
                    self._props[os.stat(mp).st_dev] = disk
                except OSError as e:
                    log.warning("ioengine: io_properties mountpoint %r cannot be used (%s); ignored", mp, e.strerror)
        self.queues: dict[int, IoQueue] = {}
        self._group: Any = None
        self._states: dict[IoQueue, dict[IoClass | None, IoClassState]] = {}

    def join_group(self, group: Any) -> None:
        """Share each disk's bucket, in-disk bound and shares with other shards: ``group.disk(dev)``
        gives this shard's iosched.SharedDisk for a disk (None: it throttles alone)."""
        if self.queues:
            raise RuntimeError("join the io group before the first I/O: this reactor already has disk queues")
        self._group = group

    def for_device(self, dev: int, now: float) -> IoQueue:
        q = self.queues.get(dev)
        if q is None:
            props = self._props.get(dev)
            shared = None
            if props is not None and self._group is not None:
                shared = self._group.disk(dev)
                if shared is None:
                    log.warning("ioengine: more disks with io_properties than the shards can share; "
                                "%d:%d is throttled per shard", os.major(dev), os.minor(dev))
            q = IoQueue(props, self.config, now, shared)
            self.queues[dev] = q
            self._states[q] = {None: q.get_class(self.config.default_class)}
        return q

    def states_of(self, queue: IoQueue) -> dict[IoClass | None, IoClassState]:
        """IoClass → its state in ``queue`` (None → the default class); fill with class_state()."""
        return self._states[queue]

    def class_state(self, reactor: Any, queue: IoQueue, io_class: IoClass) -> IoClassState:
        states = self._states[queue]
        st = states.get(io_class)
        if st is None:
            st = states[io_class] = io_class.attach(reactor, queue)
        return st

    def each_queue_of(self, io_class: IoClass, fn: Callable[[IoQueue], None]) -> None:
        for q, states in self._states.items():
            if io_class in states:
                fn(q)

    def metrics(self) -> dict[str, Any]:
        out = {}
        for dev, q in self.queues.items():
            m = q.metrics()
            m["queue"]["device"] = f"{os.major(dev)}:{os.minor(dev)}"
            out[m["queue"]["device"]] = m
        return out
