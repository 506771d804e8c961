"""Engine options: every reactor default is named once, here, and doubles as a CLI flag."""
from __future__ import annotations

import argparse
import dataclasses
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
    #: (measured: +8 % IOPS at 4k QD32 over one submit per turn, same CPU per I/O).
    submit_batch: int = field(default=8, metadata={"help": "staged requests that trigger an early submit"})
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
    idle_poll_time_us: int = field(default=200, metadata={"help": "busy-poll for completions this long before sleeping"})
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
    io_in_disk_goals: float = field(default=2.0, metadata={"help": "most cost a throttled disk holds, in latency goals"})
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
        for name in ("ring_entries", "threads", "submit_batch", "submit_alone_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"reactor option {name} must be >= 1, got {getattr(self, name)}")
        if not (isinstance(self.io_in_disk_goals, (int, float)) and not isinstance(self.io_in_disk_goals, bool)
                and 0 < self.io_in_disk_goals < float("inf")):
            raise ValueError(f"reactor option io_in_disk_goals must be a positive number, got {self.io_in_disk_goals!r}")
        for name in ("buffer_pool_depth", "buffer_pool_max_size", "idle_poll_time_us"):
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


def add_reactor_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one --reactor-… / --ring-… flag per ReactorOptions field to an argparse parser."""
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


def _flag_name(name: str) -> str:
    # Seastar spells the backend flag --reactor-backend; the ring flags read better without a prefix.
    return ("reactor-" + name if name == "backend" else name).replace("_", "-")
