"""A simulated disk in virtual time, and a driver that runs workloads through an IoQueue.

The disk (``SimDisk``) has ``parallelism`` (P) internal slots in front of which requests
wait in a FIFO; a request holds a slot for ``P * cost`` seconds, where ``cost`` comes from
the disk's *real* rates through the same cost model the scheduler uses, so with all slots
busy the disk does exactly its rated IOPS / bandwidth. ``latency`` adds a fixed delay that
holds no slot (command and transport time), and seeded ``noise`` multiplies each service
time by a log-normal factor of mean 1.

The default, P = 1 with 100 us of latency, is a disk whose throughput is one server at the
rated speed and which needs a few requests in flight to hide its latency: a 4 KiB read
alone takes ~110 us, a 1 MiB one ~1.1 ms, as on an NVMe drive. Larger P models a device
whose every request is slow and which is fast only in parallel (P = 8: a 4 KiB read alone
takes 8 x its cost); it makes large requests unrealistically slow alone.

Time spent in the FIFO is the "queue in disk" the scheduler tries to keep short.

``simulate`` runs ``Workload``s (backlogged at a depth, or open-loop at a rate) through an
``IoQueue`` and this disk, in virtual time, deterministically for a given seed. The result
holds per-class samples from which ``SimResult.report(t0, t1)`` computes achieved
ops/bytes/cost and latency percentiles in a window.

    python -m iosched.sim        # a small demonstration
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Sequence

from .cost import DEFAULT_COST_FORM, READ, WRITE, CostForm, CostModel
from .io_queue import IoQueue, IoQueueConfig, QueuedRequest
from .properties import DiskProperties

__all__ = ["SimDisk", "Workload", "ClassReport", "SimResult", "simulate", "scaled_properties"]


def scaled_properties(props: DiskProperties, factor: float) -> DiskProperties:
    """The same disk with every rate multiplied by ``factor`` (mis-calibration studies)."""
    return DiskProperties(
        mountpoints=props.mountpoints,
        read_iops=props.read_iops * factor, read_bandwidth=props.read_bandwidth * factor,
        write_iops=props.write_iops * factor, write_bandwidth=props.write_bandwidth * factor,
        read_saturation_length=props.read_saturation_length,
        write_saturation_length=props.write_saturation_length,
        physical_block_size=props.physical_block_size, duplex=props.duplex, rate_factor=props.rate_factor,
    )


class SimDisk:
    """P-slot disk with a FIFO in front, plus a fixed latency; see the module docstring."""

    __slots__ = ("parallelism", "latency", "noise", "_cost", "_rng", "_free", "_wait", "_done", "_seq",
                 "busy_time")

    def __init__(
        self,
        props: DiskProperties,
        *,
        parallelism: int = 1,
        noise: float = 0.0,
        latency: float = 100e-6,
        cost_form: CostForm = DEFAULT_COST_FORM,
        seed: int = 0,
    ) -> None:
        if parallelism < 1:
            raise ValueError(f"parallelism must be >= 1, got {parallelism}")
        self.parallelism = parallelism
        self.latency = latency
        self.noise = noise
        # the disk's real speed: rate_factor is a statement about the disk, so it counts here
        self._cost = CostModel(scaled_properties(props, props.rate_factor), cost_form).cost
        self._rng = random.Random(seed)
        self._free = parallelism
        self._wait: deque[tuple[QueuedRequest, float]] = deque()
        # (completion time, seq, request, submitted, started)
        self._done: list[tuple[float, int, QueuedRequest, float, float]] = []
        self._seq = 0
        self.busy_time = 0.0  # sum of real cost (disk-seconds) of what was served

    def _start(self, req: QueuedRequest, submitted: float, now: float) -> None:
        c = self._cost(req.direction, req.length)
        self.busy_time += c
        service = c * self.parallelism
        if self.noise:
            s = self.noise
            service *= self._rng.lognormvariate(-0.5 * s * s, s)
        self._free -= 1
        self._seq += 1
        heappush(self._done, (now + service, self._seq, req, submitted, now))

    def submit(self, req: QueuedRequest, now: float) -> None:
        if self._free:
            self._start(req, now, now)
        else:
            self._wait.append((req, now))

    def next_event(self) -> float:
        """Time a slot frees (inf if none busy)."""
        return self._done[0][0] if self._done else math.inf

    def pop_done(self, now: float) -> list[tuple[float, QueuedRequest, float, float]]:
        """Requests whose service ended by ``now``: (end, request, submitted, started).

        Completion is reported ``latency`` after the service ends (the slot is free at once).
        """
        out = []
        done = self._done
        while done and done[0][0] <= now:
            end, _, req, submitted, started = heappop(done)
            self._free += 1
            out.append((end, req, submitted, started))
            if self._wait:
                w, sub = self._wait.popleft()
                self._start(w, sub, end)
        return out

    @property
    def queue_depth(self) -> int:
        return self.parallelism - self._free + len(self._wait)


@dataclass
class Workload:
    """One io class's load. Backlogged (``depth`` requests always outstanding) unless
    ``rate`` is given (open loop: ``rate`` requests/s, Poisson or evenly spaced)."""

    name: str
    shares: float = 100.0
    direction: int = READ  # READ, WRITE, or a float in (0, 1): the fraction of writes
    size: int | Sequence[tuple[int, float]] = 4096  # bytes, or [(bytes, weight), ...]
    depth: int = 64
    rate: float | None = None
    poisson: bool = True
    start: float = 0.0
    stop: float = math.inf
    bandwidth_limit: float | None = None
    iops_limit: float | None = None


@dataclass
class ClassReport:
    name: str
    ops: int  # requests completed in the window (whole requests, not parts)
    bytes: int
    cost: float  # scheduler's cost (disk-seconds) of those requests
    disk_time: float  # the disk's real cost of those requests
    iops: float
    bandwidth: float
    mean_latency: float  # queue + disk, per request
    p50: float
    p95: float
    p99: float
    max_latency: float
    mean_in_disk: float  # dispatch -> completion, per dispatched part
    p99_in_disk: float
    mean_disk_wait: float  # time waiting in the disk's FIFO, per part
    p99_disk_wait: float
    max_disk_wait: float


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return math.nan
    k = min(len(sorted_vals) - 1, max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


@dataclass
class _Samples:
    # per completed request
    t: list[float] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    nbytes: list[int] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    disk_cost: list[float] = field(default_factory=list)
    # per completed part
    pt: list[float] = field(default_factory=list)
    in_disk: list[float] = field(default_factory=list)
    disk_wait: list[float] = field(default_factory=list)


@dataclass
class SimResult:
    duration: float
    samples: dict[str, _Samples]
    queue: IoQueue
    disk: SimDisk
    dispatches: int  # parts dispatched
    scale_trace: list[tuple[float, float, float]]  # (time, flow ratio, cost scale), per 10 ms

    def report(self, t0: float = 0.0, t1: float | None = None) -> dict[str, ClassReport]:
        """Per class, over completions in [t0, t1)."""
        t1 = self.duration if t1 is None else t1
        span = t1 - t0
        out = {}
        for name, s in self.samples.items():
            idx = [i for i, t in enumerate(s.t) if t0 <= t < t1]
            lat = sorted(s.lat[i] for i in idx)
            pidx = [i for i, t in enumerate(s.pt) if t0 <= t < t1]
            ind = sorted(s.in_disk[i] for i in pidx)
            dw = sorted(s.disk_wait[i] for i in pidx)
            nb = sum(s.nbytes[i] for i in idx)
            out[name] = ClassReport(
                name=name,
                ops=len(idx),
                bytes=nb,
                cost=sum(s.cost[i] for i in idx),
                disk_time=sum(s.disk_cost[i] for i in idx),
                iops=len(idx) / span,
                bandwidth=nb / span,
                mean_latency=sum(lat) / len(lat) if lat else math.nan,
                p50=_pct(lat, 50), p95=_pct(lat, 95), p99=_pct(lat, 99),
                max_latency=lat[-1] if lat else math.nan,
                mean_in_disk=sum(ind) / len(ind) if ind else math.nan,
                p99_in_disk=_pct(ind, 99),
                mean_disk_wait=sum(dw) / len(dw) if dw else math.nan,
                p99_disk_wait=_pct(dw, 99),
                max_disk_wait=dw[-1] if dw else math.nan,
            )
        return out

    def utilisation(self, t0: float = 0.0, t1: float | None = None) -> float:
        """Fraction of the disk's real capacity used by completions in [t0, t1)."""
        t1 = self.duration if t1 is None else t1
        return sum(r.disk_time for r in self.report(t0, t1).values()) / (t1 - t0)


class _Driver:
    """Per-workload generator state."""

    __slots__ = ("w", "cls", "rng", "sizes", "weights", "fixed_size", "write_frac", "outstanding", "next_arrival")

    def __init__(self, w: Workload, cls, rng: random.Random) -> None:
        self.w = w
        self.cls = cls
        self.rng = rng
        if isinstance(w.size, int):
            self.fixed_size = w.size
            self.sizes = self.weights = None
        else:
            self.fixed_size = 0
            self.sizes = [s for s, _ in w.size]
            tot = float(sum(wt for _, wt in w.size))
            acc, cum = 0.0, []
            for _, wt in w.size:
                acc += wt / tot
                cum.append(acc)
            self.weights = cum
        self.write_frac = float(w.direction) if not isinstance(w.direction, int) else None
        self.outstanding = 0
        self.next_arrival = w.start if w.rate else math.inf

    def make(self) -> tuple[int, int]:
        rng = self.rng
        if self.fixed_size:
            size = self.fixed_size
        else:
            x = rng.random()
            i = 0
            cum = self.weights
            while i < len(cum) - 1 and x >= cum[i]:
                i += 1
            size = self.sizes[i]
        if self.write_frac is None:
            d = self.w.direction
        else:
            d = WRITE if rng.random() < self.write_frac else READ
        return d, size

    def advance_arrival(self) -> None:
        w = self.w
        gap = self.rng.expovariate(w.rate) if w.poisson else 1.0 / w.rate
        self.next_arrival += gap
        if self.next_arrival >= w.stop:
            self.next_arrival = math.inf


def simulate(
    workloads: Sequence[Workload],
    *,
    disk_props: DiskProperties,
    sched_props: DiskProperties | None | str = "same",
    duration: float = 1.0,
    config: IoQueueConfig = IoQueueConfig(),
    parallelism: int = 1,
    noise: float = 0.0,
    latency: float = 100e-6,
    disk_cost_form: CostForm | None = None,
    seed: int = 0,
    poll_interval: float = 0.0,
) -> SimResult:
    """Run the workloads for ``duration`` virtual seconds.

    ``sched_props`` is what the scheduler believes ("same": the disk's real rates; None: no
    properties, fair ordering only). ``poll_interval`` > 0 makes the driver call
    ``dispatch`` only on a poll grid (like a reactor's loop turn) instead of exactly when
    tokens allow.
    """
    if sched_props == "same":
        sched_props = disk_props
    q = IoQueue(sched_props, config)  # type: ignore[arg-type]
    disk = SimDisk(
        disk_props, parallelism=parallelism, noise=noise, latency=latency,
        cost_form=disk_cost_form or config.cost_form, seed=seed,
    )
    master = random.Random(seed)
    drivers: list[_Driver] = []
    samples: dict[str, _Samples] = {}
    for w in workloads:
        cls = q.get_class(w.name) if w.name == config.default_class else q.create_class(w.name, w.shares)
        if w.name == config.default_class:
            q.set_shares(w.name, w.shares)
        if w.bandwidth_limit is not None:
            q.update_bandwidth(w.name, w.bandwidth_limit, 0.0)
        if w.iops_limit is not None:
            q.update_iops(w.name, w.iops_limit, 0.0)
        drivers.append(_Driver(w, cls, random.Random(master.getrandbits(64))))
        samples[w.name] = _Samples()

    disk_cost = disk._cost
    lat_extra = disk.latency
    # completions visible to the scheduler: (time, part, submitted, started)
    visible: deque[tuple[float, QueuedRequest, float, float]] = deque()
    dispatches = 0
    trace: list[tuple[float, float, float]] = []
    next_trace = 0.0
    pending_starts = sorted((d.w.start, i) for i, d in enumerate(drivers) if not d.w.rate)
    ps = 0
    now = 0.0
    wake = math.inf

    def fill(drv: _Driver, t: float) -> None:
        w = drv.w
        while drv.outstanding < w.depth:
            d, size = drv.make()
            q.queue(drv.cls, d, size, drv, t)
            drv.outstanding += 1

    while True:
        # next event
        t = wake
        e = disk.next_event()
        if e < t:
            t = e
        if visible and visible[0][0] < t:
            t = visible[0][0]
        for drv in drivers:
            if drv.next_arrival < t:
                t = drv.next_arrival
        if ps < len(pending_starts) and pending_starts[ps][0] < t:
            t = pending_starts[ps][0]
        if t >= duration or t == math.inf:
            break
        if poll_interval > 0.0:
            t = math.ceil(t / poll_interval - 1e-9) * poll_interval
        now = t
        changed = now >= wake  # does the scheduler have anything new to look at?
        # the disk finishes service; completions surface `latency` later, in end order
        if e <= now:
            for end, part, submitted, started in disk.pop_done(now):
                visible.append((end + lat_extra, part, submitted, started))
        while visible and visible[0][0] <= now:
            _, part, submitted, started = visible.popleft()
            changed = True
            drv = part.payload
            s = samples[drv.w.name]
            s.pt.append(now)
            s.in_disk.append(now - part.dispatched_at)
            s.disk_wait.append(started - submitted)
            parent = q.complete(part, part.length, now)
            if parent is not None:
                s.t.append(now)
                s.lat.append(now - parent.queued_at)
                s.nbytes.append(parent.length)
                s.cost.append(parent.cost)
                s.disk_cost.append(disk_cost(parent.direction, parent.length))
                drv.outstanding -= 1
                if not drv.w.rate and now < drv.w.stop:
                    fill(drv, now)
        while ps < len(pending_starts) and pending_starts[ps][0] <= now:
            fill(drivers[pending_starts[ps][1]], now)
            ps += 1
            changed = True
        for drv in drivers:
            while drv.next_arrival <= now:
                d, size = drv.make()
                q.queue(drv.cls, d, size, drv, now)
                drv.outstanding += 1
                drv.advance_arrival()
                changed = True
        if not changed:
            continue
        for part in q.dispatch(now):
            disk.submit(part, now)
            dispatches += 1
        nt = q.next_dispatch_time(now)
        # guard against a float rounding leaving the bucket a hair short at the wake-up
        wake = math.inf if nt is None else max(nt, now + 1e-9)
        if now >= next_trace:
            trace.append((now, q.flow_ratio, q.cost_scale))
            next_trace = now + 0.01
    return SimResult(duration, samples, q, disk, dispatches, trace)


def _demo() -> None:  # pragma: no cover - illustration
    props = DiskProperties(("/sim",), 100_000, 1_000_000_000, 50_000, 500_000_000)
    ws = [
        Workload("reads", shares=1000, size=4096, rate=50_000),
        Workload("writes", shares=100, direction=WRITE, size=131072, depth=32),
    ]
    res = simulate(ws, disk_props=props, duration=1.0, noise=0.1, seed=1)
    for r in res.report(0.2).values():
        print(f"{r.name:8} {r.iops:9.0f} IOPS {r.bandwidth / 1e6:8.1f} MB/s  p50 {r.p50 * 1e6:7.0f} us"
              f"  p95 {r.p95 * 1e6:7.0f} us  p99 {r.p99 * 1e6:7.0f} us  disk-wait p99 {r.p99_disk_wait * 1e6:6.0f} us")
    print(f"utilisation {res.utilisation(0.2):.3f}, flow ratio {res.queue.flow_ratio:.3f}")


if __name__ == "__main__":  # pragma: no cover
    _demo()
