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

Two regimes. Without ``engine`` the driver is free: requests are queued, dispatched and
completed the instant they can be, so only the disk (and the scheduler's tokens) limit
throughput -- the disk-bound regime. With ``engine=Engine(...)`` one simulated engine core
drives the disk as ioengine's reactor does, in loop turns: a turn reaps the completions that
arrived (``cpu_per_completion`` each; the queue is told of them at the turn's start), runs
the tasks they woke (``cpu_per_request`` each: the task resumes and issues its next request,
through a direct grant when nothing waits in the queue, else into the queue) and ends with
one flush (``cpu_per_turn``: commit the grant, dispatch, submit). Everything on the core is
serialised, and a task issues its next request only once its completion was handled, so a
disk faster than the engine can be simulated: the engine-bound regime, where nothing has to
wait for the disk or its tokens and each class gets what its tasks push through the core
unless the scheduler makes requests wait (issue 17).

    python -m iosched.sim        # a small demonstration
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from heapq import heappop, heappush
from typing import Any

from .cost import DEFAULT_COST_FORM, READ, WRITE, CostForm, CostModel
from .fair_queue import IoClassState, QueuedRequest
from .io_group import IoGroup
from .io_queue import DirectGrant, IoQueue, IoQueueConfig
from .properties import DiskProperties
from .wakeup_queue import WakeupQueue

__all__ = ["SimDisk", "Workload", "Engine", "ClassReport", "SimResult", "simulate", "scaled_properties"]


def scaled_properties(props: DiskProperties, factor: float) -> DiskProperties:
    """The same disk with every rate multiplied by ``factor`` (mis-calibration studies)."""
    def table(t: tuple[tuple[int, float], ...] | None) -> tuple[tuple[int, float], ...] | None:
        return None if t is None else tuple((n, iops * factor) for n, iops in t)

    return replace(
        props,
        read_iops=props.read_iops * factor, read_bandwidth=props.read_bandwidth * factor,
        write_iops=props.write_iops * factor, write_bandwidth=props.write_bandwidth * factor,
        read_iops_by_size=table(props.read_iops_by_size), write_iops_by_size=table(props.write_iops_by_size),
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


@dataclass(frozen=True)
class Engine:
    """One simulated engine core (see the module docstring): CPU seconds per request issued,
    per completion handled and per loop turn, all on one serialised core.

    The defaults are a Python reactor of the kind issue 17 measured (about 8 us per request
    in all: ~110-120k requests/s at most). ``grants``: a class issues through
    ``IoQueue.open_grant``/``take`` when nothing waits in the queue, as the reactor does.
    """

    cpu_per_request: float = 6e-6
    cpu_per_completion: float = 2e-6
    cpu_per_turn: float = 4e-6
    #: Extra CPU seconds for a request that goes through the queue rather than a direct grant
    #: (queue, dispatch and the completion's books: the reactor's Python path, ~5 us more per
    #: request than a grant's C path; `scripts/icount.sh` with io_properties shows it).
    cpu_per_queued: float = 0.0
    grants: bool = True
    #: Wake-ups per loop turn while two or more classes have completions waiting, shared by
    #: the classes' shares (iosched.WakeupQueue; the reactor's io_wakeup_budget). 0: every
    #: completion wakes its task in the turn that reaps it.
    wakeup_budget: int = 0
    #: (period, length) seconds: every ``period`` the core is taken away for ``length`` (another
    #: process, the host), as a shared machine preempts the reactor. None: never.
    stalls: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_per_request", "cpu_per_completion", "cpu_per_turn", "cpu_per_queued"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < math.inf):
                raise ValueError(f"Engine.{name} must be a number >= 0 (seconds), got {v!r}")
        if not (isinstance(self.wakeup_budget, int) and self.wakeup_budget >= 0):
            raise ValueError(f"Engine.wakeup_budget must be an int >= 0, got {self.wakeup_budget!r}")
        if self.stalls is not None:
            period, length = self.stalls
            if not (0 < length < period < math.inf):
                raise ValueError(f"Engine.stalls must be (period, length) seconds with 0 < length < period, "
                                 f"got {self.stalls!r}")

    @property
    def max_rate(self) -> float:
        """Requests per second the core can drive at most (big turns, no per-turn cost)."""
        c = self.cpu_per_request + self.cpu_per_completion
        return math.inf if c == 0 else 1.0 / c


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
    # engine regime, per completed request: where it spent its cycle (see SimResult.stages)
    stage: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)


@dataclass
class SimResult:
    duration: float
    samples: dict[str, _Samples]
    queue: IoQueue
    disk: SimDisk
    dispatches: int  # parts dispatched
    scale_trace: list[tuple[float, float, float]]  # (time, flow ratio, cost scale), per 10 ms
    #: (time, in-disk bound in unscaled disk-seconds, in-disk cost), per 10 ms
    bound_trace: list[tuple[float, float, float]] = field(default_factory=list)
    #: engine regime: fraction of the time the engine core was busy
    engine_busy: float = math.nan

    def stages(self, t0: float = 0.0, t1: float | None = None) -> dict[str, dict[str, float]]:
        """Engine regime: per class, the mean seconds a request's cycle spends in each stage
        (completions in [t0, t1)): ``ready`` (its task waits for the core), ``sched`` (queued
        in the scheduler), ``staged`` (dispatched or granted, waiting for the turn's submit),
        ``disk`` (in the disk, its FIFO included), ``reap`` (done, waiting for a turn to reap
        it), and ``outstanding``: the mean number of requests in the cycle (Little's law)."""
        t1 = self.duration if t1 is None else t1
        out = {}
        for name, smp in self.samples.items():
            rows = [r for r in smp.stage if t0 <= r[0] < t1]
            n = len(rows) or 1
            m = {k: sum(r[i] for r in rows) / n for i, k in enumerate(("ready", "sched", "staged", "disk", "reap"), 1)}
            m["cycle"] = sum(m.values())
            m["outstanding"] = len(rows) / (t1 - t0) * m["cycle"]
            out[name] = m
        return out

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

    __slots__ = ("w", "cls", "rng", "sizes", "weights", "fixed_size", "write_frac", "outstanding", "next_arrival",
                 "q")

    def __init__(self, w: Workload, cls: IoClassState, rng: random.Random, q: IoQueue) -> None:
        self.w = w
        self.cls = cls
        self.q = q
        self.rng = rng
        if isinstance(w.size, int):
            self.fixed_size = w.size
            self.sizes: list[int] = []  # (unused with a fixed size)
            self.weights: list[float] = []
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
        if not self.w.rate:  # backlogged: each request follows a completion (IoClassState.fed)
            self.cls.fed[0] += 1
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
        rate: float = w.rate  # type: ignore[assignment]  # only open-loop workloads arrive
        gap = self.rng.expovariate(rate) if w.poisson else 1.0 / rate
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
    engine: Engine | Sequence[tuple[float, Engine]] | None = None,
    shards: Sequence[int] | None = None,
    shared: bool = True,
) -> SimResult:
    """Run the workloads for ``duration`` virtual seconds.

    ``sched_props`` is what the scheduler believes ("same": the disk's real rates; None: no
    properties, fair ordering only). ``poll_interval`` > 0 makes the driver call
    ``dispatch`` only on a poll grid (like a reactor's loop turn) instead of exactly when
    tokens allow. ``engine``: drive the disk with a simulated engine core (an ``Engine``, or
    ``[(start, Engine), ...]`` phases to change it mid-run); None: the disk-bound driver.
    ``shards``: the shard of each workload (disk-bound driver only): each shard has its own
    queue, and with ``shared`` the queues share the disk's bucket, in-disk bound and shares
    through an ``IoGroup``; without, each shard throttles alone, as if it had the disk to itself.
    ``SimResult.queue`` is shard 0's queue.
    """
    if engine is not None and shards is not None:
        raise ValueError("simulate: shards are simulated with the disk-bound driver only (engine=None)")
    if engine is not None:
        phases = [(0.0, engine)] if isinstance(engine, Engine) else sorted(engine, key=lambda p: p[0])
        return _simulate_engine(
            workloads, phases, disk_props=disk_props, sched_props=sched_props, duration=duration, config=config,
            parallelism=parallelism, noise=noise, latency=latency, disk_cost_form=disk_cost_form, seed=seed,
        )
    if sched_props == "same":
        sched_props = disk_props
    if shards is not None and len(shards) != len(workloads):
        raise ValueError(f"shards names one shard per workload: {len(shards)} for {len(workloads)} workloads")
    nshards = max(shards) + 1 if shards else 1
    group = IoGroup(nshards) if shards is not None and shared else None
    queues = [IoQueue(sched_props, config, 0.0,  # type: ignore[arg-type]
                      group.disk(0, k) if group is not None else None) for k in range(nshards)]
    q = queues[0]
    disk = SimDisk(
        disk_props, parallelism=parallelism, noise=noise, latency=latency,
        cost_form=disk_cost_form or config.cost_form, seed=seed,
    )
    master = random.Random(seed)
    drivers: list[_Driver] = []
    samples: dict[str, _Samples] = {}
    for i, w in enumerate(workloads):
        wq = queues[shards[i]] if shards is not None else q
        if w.name == config.default_class or w.name in wq.classes:
            cls = wq.get_class(w.name)
            wq.set_shares(w.name, w.shares)
        else:
            cls = wq.create_class(w.name, w.shares)
        if w.bandwidth_limit is not None:
            wq.update_bandwidth(w.name, w.bandwidth_limit, 0.0)
        if w.iops_limit is not None:
            wq.update_iops(w.name, w.iops_limit, 0.0)
        drivers.append(_Driver(w, cls, random.Random(master.getrandbits(64)), wq))
        samples.setdefault(w.name, _Samples())

    disk_cost = disk._cost
    lat_extra = disk.latency
    # completions visible to the scheduler: (time, part, submitted, started)
    visible: deque[tuple[float, QueuedRequest, float, float]] = deque()
    dispatches = 0
    trace: list[tuple[float, float, float]] = []
    bound: list[tuple[float, float, float]] = []
    next_trace = 0.0
    pending_starts = sorted((d.w.start, i) for i, d in enumerate(drivers) if not d.w.rate)
    ps = 0
    now = 0.0
    wake = math.inf

    def fill(drv: _Driver, t: float) -> None:
        w = drv.w
        while drv.outstanding < w.depth:
            d, size = drv.make()
            drv.q.queue(drv.cls, d, size, drv, t)
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
            s.in_disk.append(now - part.dispatched_at)  # type: ignore[operator]  # dispatched
            s.disk_wait.append(started - submitted)
            parent = drv.q.complete(part, part.length, now)
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
                drv.q.queue(drv.cls, d, size, drv, now)
                drv.outstanding += 1
                drv.advance_arrival()
                changed = True
        if not changed:
            continue
        nt = None
        for sq in queues:
            for part in sq.dispatch(now):
                disk.submit(part, now)
                dispatches += 1
            t_q = sq.next_dispatch_time(now)
            if t_q is not None and (nt is None or t_q < nt):
                nt = t_q
        # guard against a float rounding leaving the bucket a hair short at the wake-up
        wake = math.inf if nt is None else max(nt, now + 1e-9)
        if now >= next_trace:
            trace.append((now, q.flow_ratio, q.cost_scale))
            bound.append((now, q.in_disk_bound, q.in_disk_cost))
            next_trace = now + 0.01
    return SimResult(duration, samples, q, disk, dispatches, trace, bound)


class _Task:
    """Engine regime: one request of a task, from the moment the task is ready to issue it."""

    __slots__ = ("drv", "ready_at", "issued_at", "submitted", "direction", "length", "grant", "dispatched_at",
                 "cost")

    direction: int
    length: int
    cost: float
    grant: DirectGrant | None

    def __init__(self, drv: _Driver, ready_at: float) -> None:
        self.drv = drv
        self.ready_at = ready_at
        self.issued_at = ready_at
        self.submitted = 0.0
        self.grant = None  # the DirectGrant it was taken under, if any
        self.dispatched_at = 0.0


def _simulate_engine(
    workloads: Sequence[Workload], phases: list[tuple[float, Engine]], *, disk_props: DiskProperties,
    sched_props: DiskProperties | None | str, duration: float, config: IoQueueConfig, parallelism: int,
    noise: float, latency: float, disk_cost_form: CostForm | None, seed: int,
) -> SimResult:
    """The engine regime of ``simulate`` (see the module docstring)."""
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
        drivers.append(_Driver(w, cls, random.Random(master.getrandbits(64)), q))
        samples[w.name] = _Samples()
    disk_cost = disk._cost
    lat_extra = disk.latency
    visible: deque[tuple[float, Any, float, float]] = deque()  # (visible at, unit, submitted, started)
    ready: deque[_Task] = deque()
    staged: list[Any] = []  # granted requests (_Task) and dispatched units, submitted at the next flush
    grant: DirectGrant | None = None
    share = q.config.share_in_disk
    reaped: dict[DirectGrant, int] = {}  # grant -> completions reaped, booked at the flush
    trace: list[tuple[float, float, float]] = []
    bound: list[tuple[float, float, float]] = []
    next_trace = 0.0
    starts = sorted((d.w.start, i) for i, d in enumerate(drivers) if not d.w.rate)
    ps = 0
    phase_i = 0
    eng = phases[0][1]
    dispatches = 0
    busy = 0.0
    now = 0.0
    wake = math.inf  # when the queue's tokens allow the next dispatch (the reactor's timer)
    wq: WakeupQueue | None = None  # completions waiting for their wake-up (Engine.wakeup_budget)
    woken: list[_Task] = []
    next_stall = phases[0][1].stalls[0] if phases[0][1].stalls is not None else math.inf

    def start_tasks(drv: _Driver, t: float) -> None:
        for _ in range(drv.w.depth - drv.outstanding):
            ready.append(_Task(drv, t))
            drv.outstanding += 1

    while True:
        while phase_i + 1 < len(phases) and phases[phase_i + 1][0] <= now:
            phase_i += 1
            eng = phases[phase_i][1]
        # Anything to do at `now`? Otherwise the core sleeps until the next event.
        e = disk.next_event()
        if e <= now:
            for end, unit, submitted, started in disk.pop_done(now):
                visible.append((end + lat_extra, unit, submitted, started))
        idle = (not ready and not staged and not (visible and visible[0][0] <= now) and wake > now
                and not (wq is not None and wq.pending)
                and not (ps < len(starts) and starts[ps][0] <= now)
                and all(drv.next_arrival > now for drv in drivers))
        if idle:
            t = wake
            if e < t:
                t = e
            if visible and visible[0][0] < t:
                t = visible[0][0]
            for drv in drivers:
                if drv.next_arrival < t:
                    t = drv.next_arrival
            if ps < len(starts) and starts[ps][0] < t:
                t = starts[ps][0]
            if t >= duration or t == math.inf:
                break
            if t > now:
                now = t
            continue
        if now >= duration:
            break
        # -- one loop turn, starting at `now` ----------------------------------------------
        if eng.stalls is not None and now >= next_stall:
            now = max(now, next_stall) + eng.stalls[1]  # preempted: the turn starts late
            next_stall += eng.stalls[0] * (1 + int((now - next_stall) // eng.stalls[0]))
        t0 = now
        cpu = 0.0
        if eng.wakeup_budget and wq is None:
            wq = WakeupQueue(eng.wakeup_budget)
        if wq is not None:
            wq.budget = eng.wakeup_budget or 1 << 30  # a phase without it: what waits goes now
        while ps < len(starts) and starts[ps][0] <= t0:
            start_tasks(drivers[starts[ps][1]], t0)
            ps += 1
        for drv in drivers:
            while drv.next_arrival <= t0:
                ready.append(_Task(drv, drv.next_arrival))
                drv.outstanding += 1
                drv.advance_arrival()
        # the flush: reap what arrived, book it, dispatch, submit
        while visible and visible[0][0] <= t0:
            vis, unit, submitted, started = visible.popleft()
            cpu += eng.cpu_per_completion
            if unit.__class__ is _Task:
                task = unit
                reaped[task.grant] = reaped.get(task.grant, 0) + 1  # type: ignore[index,arg-type]  # granted
                parent: _Task | QueuedRequest | None = task
                dispatched_at = task.dispatched_at
            else:
                task = unit.payload
                dispatched_at = unit.dispatched_at
                parent = q.complete(unit, unit.length, t0)
            drv = task.drv
            smp = samples[drv.w.name]
            smp.pt.append(t0)
            smp.in_disk.append(t0 - dispatched_at)
            smp.disk_wait.append(started - submitted)
            if parent is None:
                continue
            smp.t.append(t0)
            smp.lat.append(t0 - task.issued_at)
            smp.nbytes.append(task.length)
            smp.cost.append(parent.cost)
            smp.disk_cost.append(disk_cost(task.direction, task.length))
            smp.stage.append((t0, task.issued_at - task.ready_at, dispatched_at - task.issued_at,
                              task.submitted - dispatched_at, vis - task.submitted, t0 - vis))
            drv.outstanding -= 1
            if not drv.w.rate and t0 < drv.w.stop:
                if wq is not None:
                    wq.push(drv.cls, drv.cls.shares, _Task(drv, t0))
                else:
                    ready.append(_Task(drv, t0))
                drv.outstanding += 1
        if grant is not None:
            q.commit_grant(grant)
            grant = None
        for g, k in reaped.items():
            q.complete_grant(g, k, t0)
        reaped.clear()
        if q.queued:
            for part in q.dispatch(t0):
                staged.append(part)
                dispatches += 1
            nt = q.next_dispatch_time(t0)
            wake = math.inf if nt is None else max(nt, t0 + 1e-9)
        else:
            wake = math.inf
        if staged:
            ts = t0 + cpu
            for unit in staged:
                if unit.__class__ is _Task:
                    unit.submitted = ts
                else:
                    unit.payload.submitted = ts
                disk.submit(unit, ts)
            staged.clear()
        # the tasks woken so far run, each issuing its next request
        if wq is not None and wq.pending:
            wq.take(woken)
            ready.extend(woken)
            woken.clear()
        for _ in range(len(ready)):
            task = ready.popleft()
            t = t0 + cpu
            cpu += eng.cpu_per_request
            drv = task.drv
            d, size = drv.make()
            task.issued_at = t
            task.direction = d
            task.length = size
            cls = drv.cls
            # as the reactor: a grant while nothing waits, or (share_in_disk) while what waits is
            # only classes over their part of the disk, which open_grant checks
            if eng.grants and q.throttling and not cls.limited and not cls.queue and (
                    not q.queued or share):
                if grant is None or grant.io_class is not cls:
                    if grant is not None:
                        q.commit_grant(grant)
                    grant = q.open_grant(cls, t)
                if grant is not None and grant.take(d, size):
                    task.grant = grant
                    task.dispatched_at = grant.at
                    task.cost = grant.last_cost
                    staged.append(task)
                    dispatches += 1
                    continue
            q.queue(cls, d, size, task, t)
            cpu += eng.cpu_per_queued
        cpu += eng.cpu_per_turn
        busy += cpu
        now = t0 + cpu
        if t0 >= next_trace:
            trace.append((t0, q.flow_ratio, q.cost_scale))
            bound.append((t0, q.in_disk_bound, q.in_disk_cost))
            next_trace = t0 + 0.01
    return SimResult(duration, samples, q, disk, dispatches, trace, bound, engine_busy=busy / duration)


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
