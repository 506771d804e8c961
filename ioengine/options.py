"""Engine options: every reactor default is named once, here, and doubles as a CLI flag."""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any

BACKENDS = ("auto", "io_uring", "linux-aio", "threads")


@dataclass(frozen=True, slots=True)
class ReactorOptions:
    #: Which kernel interface carries I/O: "auto" probes io_uring, then linux-aio, then threads.
    backend: str = field(default="auto", metadata={"help": "I/O backend: " + ", ".join(BACKENDS)})
    #: Submission-queue size of the io_uring ring (the completion queue is twice as large), and
    #: the number of events of the linux-aio context. Also the most I/O the reactor keeps in flight.
    ring_entries: int = field(default=256, metadata={"help": "io_uring SQ entries / aio events"})
    #: Try IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN and COOP_TASKRUN before plain set-up.
    ring_taskrun_flags: bool = field(default=True, metadata={"help": "use DEFER/COOP_TASKRUN when the kernel allows"})
    #: Submit early, mid-turn, once this many requests are staged: when a batch of completions
    #: wakes many tasks, the first resubmissions reach the disk before the last task has run
    #: (measured: +8 % IOPS at 4k QD32 over one submit per turn, same CPU per I/O). 4 rather
    #: than 8 since the mid-turn submission is C (docs/benchmarks.md, 2026-12-02: reads better
    #: in 7 of 8 alternating rounds over two days, writes even).
    submit_batch: int = field(default=4, metadata={"help": "staged requests that trigger an early submit"})
    #: A request at least this large is submitted at once, alone. Large sequential requests
    #: submitted together are merged by the block layer into one device request, which then
    #: completes all at once; the disk idles while the loop turns round to resubmit, and the
    #: stream runs in lockstep (measured: 128k sequential reads at 5 in flight were merged into
    #: ~636 KiB requests at queue depth ~0.9).
    submit_alone_bytes: int = field(default=65536, metadata={"help": "requests this large are submitted at once"})
    #: Poll for completions this long before the loop sleeps while I/O is in flight (Seastar's
    #: --idle-poll-time-us). Waking a sleeping thread costs ~25-30 us on a VM, more than a fast
    #: disk's whole 4k read; polling trades that CPU for latency (measured here: 4k QD1 reads
    #: +45 % IOPS, 128k output stream +10-30 % MB/s). 0 sleeps at once. Seastar's default.
    idle_poll_time_us: int = field(default=200,
                                   metadata={"help": "busy-poll for completions this long before sleeping"})
    #: With more than idle_poll_depth requests in the kernel, poll only while completions come
    #: at least this often (us); with one, always (the disk idles until we resubmit). A wake-up from the
    #: eventfd costs ~25-30 us of CPU and of latency on a VM; spinning up to about two wake-ups'
    #: worth per completion costs at most twice that CPU and takes the wake-up's latency off
    #: every request of small I/O at low depth on a fast disk (fio's ssd-test.fio: 4k at QD4;
    #: `scripts/pattern_ab.py FILE randread 4096 4 --side a=idle_poll_wake_us=30 --side
    #: b=idle_poll_wake_us=60`), while 64-128k requests at low depth keep sleeping: polling
    #: them always buys little throughput for several times the CPU per I/O (`ioengine-bench
    #: compare --idle-poll-wake-us 1000000` shows both).
    idle_poll_wake_us: int = field(default=60,
                                   metadata={"help": "poll at depth only while completions come this often (us)"})
    #: Up to this many requests in the kernel, poll whatever the gap between completions: the
    #: disk runs at half its depth or less while the loop sleeps and wakes, and a wake-up on a
    #: VM costs nearly the CPU a spin does (64k sequential reads at QD2: polling ~1.5x the IOPS
    #: of sleeping for ~1.2x the CPU per I/O; `scripts/pattern_ab.py FILE read 65536 2 --side
    #: a=idle_poll_depth=1 --side b=idle_poll_depth=2`). Deeper, idle_poll_wake_us decides.
    idle_poll_depth: int = field(default=2,
                                 metadata={"help": "poll always with at most this many requests in the kernel"})
    #: With more than one request in the kernel, completions come in bursts and spinning the
    #: whole gap between them buys nothing: the poll window starts with a sleep of this fraction
    #: of how long spins have recently waited for a completion (less what a timed wait returns
    #: late), ended early by the eventfd if one comes first; 0 spins at once. Needs epoll_pwait2
    #: (Linux 5.11); not taken while an smp shard's rings are busy (a message within the poll
    #: window: the sleep would not look at them). Larger fractions trade IOPS for CPU
    #: (docs/profile.md; `scripts/cpu_per_io.py FILE idle_poll_hybrid=0` against the default).
    idle_poll_hybrid: float = field(default=0.5,
                                    metadata={"help": "at depth, sleep this part of the learnt wait before polling"})
    #: Wait for the loop's next timer to the microsecond: asyncio's selector waits in whole
    #: milliseconds, so ``asyncio.sleep(0.0002)`` slept ~1.2 ms and paced I/O (rate limits,
    #: think times) came in bursts. The wait becomes epoll_pwait2's nanosecond timeout and the
    #: loop thread's timer slack 1 µs (`ioengine-bench timers` shows the difference). asyncio's
    #: own loops only: uvloop's timers stay libuv's milliseconds.
    precise_timers: bool = field(default=True, metadata={"help": "fire timers to the microsecond, not the millisecond"})
    #: Worker threads of the "threads" backend and of metadata calls the kernel cannot do async.
    threads: int = field(default=4, metadata={"help": "threads for the thread-pool backend and blocking calls"})
    #: Disk calibration in Seastar's io_properties.yaml format (YAML text, or a file's path).
    #: Disks listed there are throttled to their capacity; others are only ordered fairly.
    io_properties: str | None = field(default=None, metadata={"help": "io_properties YAML text"})
    io_properties_file: str | None = field(default=None, metadata={"help": "path of an io_properties.yaml"})
    #: Latency goal of the disk scheduler (ms); None keeps iosched's default.
    io_latency_goal_ms: float | None = field(default=None, metadata={"help": "disk scheduler latency goal (ms)"})
    #: The most cost a throttled disk holds (dispatched, not completed), in latency goals.
    #: Beyond Seastar's rate-only bucket, this is what makes shares bite when the engine is
    #: slower than the calibrated disk; more than one goal because this virtio disk keeps a
    #: full read/write mix ~0.9 ms per request (fio), above the 0.75 ms goal (measured with
    #: `ioengine-bench sched`: (b)'s utilisation 0.52-0.57 at 1, 0.71-0.80 at 2, 0.75-0.76 at 3).
    io_in_disk_goals: float = field(default=2.0,
                                    metadata={"help": "most cost a throttled disk holds, in latency goals"})
    #: Let that bound adapt (iosched's "knee", IoQueueConfig.adaptive_in_disk) while two or more
    #: classes compete, so shares hold when the engine, not the disk, is the bottleneck. Off by
    #: default: on this virtio disk, whose latency rises with depth as its throughput does, the
    #: latency-gradient controller settles at ~9 requests in the disk and two classes got 4:1
    #: at ~0.7x the throughput they get without it (docs/scheduler.md; `.../shares` experiment).
    io_adaptive_in_disk: bool = field(default=False, metadata={"help": "adapt the in-disk bound to hold shares (knee)"})
    #: While two or more io classes have work on a disk, keep this fraction of the requests they
    #: offer waiting in the fair queue (iosched's IoQueueConfig.fair_wait_fraction): shares then
    #: decide who goes, and whose tasks get the loop, also when the engine is the bottleneck.
    #: Each dispatch from a throttled disk's queue hands out at most this fraction of the token
    #: bucket (iosched's IoQueueConfig.dispatch_slice), the rest on the next loop turns: after a
    #: stall, the classes whose tasks requeue in between keep their share of the burst instead
    #: of a class with few shares taking it. It costs throughput where very many requests wait
    #: (two classes of 128 each at the calibrated rate: ~15 %); docs/scheduler.md has both
    #: sides, `ioengine-bench sched` (a) measures them. 0: no slicing.
    io_dispatch_slice: float = field(default=0.25,
                                     metadata={"help": "most of the token bucket one dispatch hands out (0: all)"})
    #: While two or more io classes have work on a throttled disk, split an in-disk bound
    #: (io_share_in_disk_goals) among them by shares (iosched's IoQueueConfig.share_in_disk): a
    #: class within its part keeps the direct path, one over it waits in the fair queue. With the
    #: bound near the depth where the disk's throughput stops growing, the requests held back
    #: are the small class's, out of the disk, and shares hold when the engine, not the disk's
    #: rate, is the bottleneck (docs/scheduler.md; `ioengine-bench sched` (a) measures it).
    io_share_in_disk: bool = field(default=True,
                                   metadata={"help": "split the in-disk bound among busy io classes by shares"})
    #: The bound the busy classes split, in latency goals (a class alone keeps io_in_disk_goals).
    #: Below what two classes of 32 tasks offer together on this virtio disk, and near where its
    #: 4 KiB throughput stops growing with depth. `ioengine-bench sched` measures what it gives
    #: ((a) at iotune's rate, the 1 % class) and what it costs ((b): 128 KiB writes next to a
    #: class with 10x their shares get less of the disk); docs/scheduler.md.
    io_share_in_disk_goals: float = field(default=0.85,
                                          metadata={"help": "in-disk bound busy io classes split, in goals"})
    #: A busy class whose peak demand stays below its part of that bound but above this fraction
    #: of it (its tasks held by the engine, not idle) sizes the bound instead: the others' parts
    #: shrink with its demand, so shares hold also when the calibration is above what the
    #: engine pushes (iosched's IoQueueConfig.share_follow_demand; `ioengine-bench sched` (a)
    #: at the calibrated rate). 1: the parts follow the bound alone.
    io_share_follow_demand: float = field(default=0.6,
                                          metadata={"help": "demand, as a fraction of a class's part, that sizes the "
                                                            "split bound (1: off)"})
    #: While an io class with requests in the disk has none queued, hold back the classes ahead
    #: of it in fairness: its tasks are about to queue more, and serving the others meanwhile
    #: gives them its share (iosched's IoQueueConfig.anticipate; `scripts/shares.py --shares
    #: 990:10 --anticipate` measures the 1 % class with it).
    io_anticipate: bool = field(default=False,
                                metadata={"help": "hold back classes ahead of one about to queue again"})
    io_fair_wait_fraction: float = field(default=0.0,
                                         metadata={"help": "share of two busy classes' requests kept waiting in "
                                                           "the fair queue (0: off)"})
    #: The loop's time shared by io class (iosched.WakeupQueue): while completions of two or more
    #: classes wait to wake their tasks, one loop turn wakes at most this many, the class that
    #: has had the least for its shares first; the rest wake on the next turns. When the
    #: engine, not the disk, is the bottleneck nothing waits in the disk's fair queue, and
    #: this is what shares the engine (Seastar's CPU scheduling groups, for I/O-driven tasks).
    #: A class alone is never held. 0: every completion wakes its task in the turn that reaps it.
    #: Smaller holds shares closer and costs more loop turns (docs/scheduler.md has both sides;
    #: `python scripts/shares.py --iops N --wakeup-budget B` measures them on a disk).
    io_wakeup_budget: int = field(default=4, metadata={"help": "wake-ups per loop turn while io classes "
                                                               "compete for the loop (0: off)"})
    #: Idle buffers kept per size class by the per-reactor DMA buffer pool.
    buffer_pool_depth: int = field(default=64, metadata={"help": "idle DMA buffers kept per size class"})
    #: Largest buffer size the pool recycles; larger buffers are allocated and freed each time.
    buffer_pool_max_size: int = field(default=1 << 20, metadata={"help": "largest pooled DMA buffer (bytes)"})

    def __post_init__(self) -> None:
        for f in fields(self):
            v, kind = getattr(self, f.name), type(f.default)
            if f.default is None:  # optional settings: checked where they are used
                continue
            if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise TypeError(f"reactor option {f.name} must be an integer, got {v!r}")
            if kind is bool and not isinstance(v, bool):
                raise TypeError(f"reactor option {f.name} must be True or False, got {v!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown reactor backend {self.backend!r}; expected one of {', '.join(BACKENDS)}")
        # The optional ones: None, or what they say.
        if self.io_properties is not None and not isinstance(self.io_properties, str):
            raise TypeError(f"reactor option io_properties must be YAML text (str) or None, "
                            f"got {type(self.io_properties).__name__} {self.io_properties!r}")
        if self.io_properties_file is not None and not isinstance(self.io_properties_file, (str, os.PathLike)):
            raise TypeError(f"reactor option io_properties_file must be a path or None, "
                            f"got {type(self.io_properties_file).__name__} {self.io_properties_file!r}")
        goal = self.io_latency_goal_ms
        if goal is not None and (isinstance(goal, bool) or not isinstance(goal, (int, float))
                                 or not 0 < goal < float("inf")):
            raise ValueError(f"reactor option io_latency_goal_ms must be a positive number of ms or None, got {goal!r}")
        for name in ("ring_entries", "threads", "submit_batch", "submit_alone_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"reactor option {name} must be >= 1, got {getattr(self, name)}")
        if self.io_wakeup_budget < 0:
            raise ValueError(f"reactor option io_wakeup_budget must be >= 0 (0: off), got {self.io_wakeup_budget}")
        ds = self.io_dispatch_slice
        if not (isinstance(ds, (int, float)) and not isinstance(ds, bool) and 0 <= ds <= 1):
            raise ValueError(f"reactor option io_dispatch_slice must be a number in [0, 1], got {ds!r}")
        wf = self.io_fair_wait_fraction
        if not (isinstance(wf, (int, float)) and not isinstance(wf, bool) and 0 <= wf < 1):
            raise ValueError("reactor option io_fair_wait_fraction must be a number in [0, 1), "
                             f"got {self.io_fair_wait_fraction!r}")
        fd = self.io_share_follow_demand
        if not (isinstance(fd, (int, float)) and not isinstance(fd, bool) and 0 < fd <= 1):
            raise ValueError(f"reactor option io_share_follow_demand must be a number in (0, 1], got {fd!r}")
        g = self.io_share_in_disk_goals
        if not (isinstance(g, (int, float)) and not isinstance(g, bool) and 0 < g < float("inf")):
            raise ValueError(f"reactor option io_share_in_disk_goals must be a positive number, got {g!r}")
        if not (isinstance(self.io_in_disk_goals, (int, float)) and not isinstance(self.io_in_disk_goals, bool)
                and 0 < self.io_in_disk_goals < float("inf")):
            raise ValueError("reactor option io_in_disk_goals must be a positive number, "
                             f"got {self.io_in_disk_goals!r}")
        h = self.idle_poll_hybrid
        if not (isinstance(h, (int, float)) and not isinstance(h, bool) and 0 <= h < 1):
            raise ValueError(f"reactor option idle_poll_hybrid must be a number in [0, 1), got {h!r}")
        for name in ("buffer_pool_depth", "buffer_pool_max_size", "idle_poll_time_us", "idle_poll_wake_us",
                     "idle_poll_depth"):
            if getattr(self, name) < 0:
                raise ValueError(f"reactor option {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ReactorOptions:
        """Build from keyword arguments, refusing unknown names with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown reactor option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def replace(self, **kwargs: Any) -> ReactorOptions:
        return dataclasses.replace(self, **kwargs)


@dataclass(frozen=True, slots=True)
class SmpOptions:
    """How many shards (one process per core) ``ioengine.run`` starts, and their message rings.

    Passed as keyword arguments of ``ioengine.run`` / ``ioengine.smp.run`` beside the reactor
    options (every shard's reactor gets the same ReactorOptions).
    """

    #: Shards: one process (with its own loop and reactor) per core; 1 is the plain
    #: single-process engine, no extra process. Seastar's --smp.
    smp: int = 1
    #: CPUs to pin the shards to, in shard order: "0-3,6" or a sequence of ints. None: the
    #: CPUs of the process's affinity mask. Seastar's --cpuset.
    cpuset: str | tuple[int, ...] | None = None
    #: Bytes of each one-way message ring between two shards (a power of two). A message
    #: (one pickled call or result) must fit in one ring; a fuller ring only delays its sender.
    smp_ring_bytes: int = 1 << 20
    #: An outbox holding this many bytes is written into its ring at once, mid-turn, so that the
    #: receiving shard starts on it while the sender produces the rest (the reactor's
    #: submit_batch, for messages); otherwise once per loop turn.
    smp_batch_bytes: int = 4096
    #: How long shards get to stop (their work cancelled, reactors drained and closed) before
    #: they are killed and the run ends with an error.
    smp_stop_timeout_s: float = 10.0
    #: The shards' queues of a disk with io_properties share its token bucket, its in-disk
    #: bound and the io classes' shares (Seastar's io_group, and shares held across shards:
    #: iosched.io_group). False: each shard throttles as if it had the disk to itself
    #: (N shards may then dispatch N times the calibrated capacity); for comparisons.
    smp_io_group: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.smp, bool) or not isinstance(self.smp, int) or self.smp < 1:
            raise ValueError(f"smp must be an integer >= 1, got {self.smp!r}")
        r = self.smp_ring_bytes
        if isinstance(r, bool) or not isinstance(r, int) or r < 4096 or r & (r - 1):
            raise ValueError(f"smp_ring_bytes must be a power of two >= 4096, got {r!r}")
        b = self.smp_batch_bytes
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"smp_batch_bytes must be an integer >= 1, got {b!r}")
        if not isinstance(self.smp_io_group, bool):
            raise ValueError(f"smp_io_group must be True or False, got {self.smp_io_group!r}")
        if not (isinstance(self.smp_stop_timeout_s, (int, float)) and self.smp_stop_timeout_s > 0):
            raise ValueError(f"smp_stop_timeout_s must be a positive number, got {self.smp_stop_timeout_s!r}")
        if self.cpuset is not None and not isinstance(self.cpuset, str):
            object.__setattr__(self, "cpuset", tuple(self.cpuset))

    @classmethod
    def split_kwargs(cls, kwargs: dict[str, Any]) -> tuple[SmpOptions | None, dict[str, Any]]:
        """(SmpOptions from the smp keys of ``kwargs`` or None if there are none, the other keys)."""
        names = {f.name for f in fields(cls)}
        mine = {k: v for k, v in kwargs.items() if k in names and v is not None}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        return (cls(**mine) if mine else None), rest

    def cpus(self, every: bool = False) -> list[int]:
        """The CPU of each shard, in shard order; ValueError if there are fewer than ``smp``.
        ``every``: all the CPUs of the cpuset (or of the affinity mask), whatever ``smp`` is."""
        allowed = sorted(os.sched_getaffinity(0))
        if self.cpuset is None:
            cpus, where = allowed, "the CPUs this process may run on"
        else:
            cpus, where = parse_cpuset(self.cpuset), f"cpuset {self.cpuset!r}"
            outside = sorted(set(cpus) - set(allowed))
            if outside:
                raise ValueError(f"cpuset {self.cpuset!r} names CPU(s) {outside} this process may not run on "
                                 f"(allowed: {allowed})")
        if every:
            return cpus
        if self.smp > len(cpus):
            raise ValueError(f"smp={self.smp} needs {self.smp} CPUs, but {where} has only {len(cpus)}: {cpus}")
        return cpus[: self.smp]


def parse_cpuset(spec: str | tuple[int, ...] | list[int]) -> list[int]:
    """CPUs of a cpuset: "0-3,6" (Linux's list format) or a sequence of ints; order kept, no repeats."""
    if isinstance(spec, str):
        cpus: list[int] = []
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                lo, _, hi = part.partition("-")
                a, b = int(lo), int(hi) if hi else int(lo)
            except ValueError:
                raise ValueError(f"bad cpuset {spec!r}: expected e.g. \"0-3,6\"") from None
            if a < 0 or b < a:
                raise ValueError(f"bad cpuset {spec!r}: range {part!r}")
            cpus.extend(range(a, b + 1))
    else:
        cpus = [int(c) for c in spec]
    if not cpus:
        raise ValueError(f"empty cpuset {spec!r}")
    if len(set(cpus)) != len(cpus):
        raise ValueError(f"cpuset {spec!r} names a CPU twice")
    return cpus


def add_reactor_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one --reactor-… / --ring-… flag per ReactorOptions field to an argparse parser,
    and --smp / --cpuset (SmpOptions: read them back with smp_options_from_args)."""
    smp_group = parser.add_argument_group("shards")
    defaults = SmpOptions()
    for flag, kw in (("--smp", dict(dest="smp_smp", type=int, default=defaults.smp,
                                    help="shards: one process, loop and reactor per core")),
                     ("--cpuset", dict(dest="smp_cpuset", default=defaults.cpuset,
                                       help='CPUs to pin the shards to, e.g. "0-3" (default: the process affinity)'))):
        try:
            smp_group.add_argument(flag, **kw)
        except argparse.ArgumentError:
            pass  # the tool defines its own --smp (read back by smp_options_from_args too)
    group = parser.add_argument_group("reactor")
    for f in fields(ReactorOptions):
        flag = "--" + _flag_name(f.name)
        kind = type(f.default)
        if f.default is None:
            kind = float if f.name.endswith("_ms") else str
        if kind is bool:
            group.add_argument(flag, dest=f"reactor_{f.name}", action=argparse.BooleanOptionalAction,
                               default=f.default, help=f.metadata.get("help"))
        else:
            group.add_argument(flag, dest=f"reactor_{f.name}", type=kind, default=f.default,
                               choices=BACKENDS if f.name == "backend" else None, help=f.metadata.get("help"))
    return parser


def reactor_options_from_args(ns: argparse.Namespace) -> ReactorOptions:
    """The ReactorOptions described by flags that add_reactor_arguments() added."""
    return ReactorOptions(**{f.name: getattr(ns, f"reactor_{f.name}") for f in fields(ReactorOptions)})


def smp_options_from_args(ns: argparse.Namespace) -> SmpOptions:
    """The SmpOptions described by the --smp / --cpuset flags that add_reactor_arguments() added."""
    smp = getattr(ns, "smp_smp", getattr(ns, "smp", SmpOptions().smp))
    return SmpOptions(smp=smp, cpuset=getattr(ns, "smp_cpuset", getattr(ns, "cpuset", None)))


def _flag_name(name: str) -> str:
    # Seastar spells the backend flag --reactor-backend; the ring flags read better without a prefix.
    return ("reactor-" + name if name == "backend" else name).replace("_", "-")
