"""iotune: calibrate a disk into Seastar's io_properties.yaml, measuring through ioengine itself.

    iotune --evaluation-directory /var/lib/data --properties-file io_properties.yaml

Like Seastar's iotune, it lays out a test file in the directory and measures, each with a warm-up
left out of the figure and sampled every second: sequential write bandwidth (which also lays the file
out), sequential read bandwidth, random write IOPS and random read IOPS. The random depth comes from
the device's queue (``/sys/block/<dev>/queue/nr_requests``), the random buffer from its minimum I/O
size. The test file is removed afterwards, also on Ctrl-C and SIGTERM.

Beyond Seastar: ``--compare-fio`` runs fio on the same patterns in the same run and prints the
ratios; ``--latency-map`` measures read p95 under a grid of read-IOPS and write-bandwidth loads;
``--repeat N`` runs the calibration N times and reports each value's coefficient of variation.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import math
import os
import re
import signal
import statistics
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ioengine
from ioengine import OpenFlags, ReactorOptions, SmpOptions, add_reactor_arguments, reactor_options_from_args
from ioengine.disk_queues import load_properties
from iosched import DiskProperties, IoPropertiesError, dump_io_properties, save_io_properties
from iosched.properties import parse_size_text

from .iotune_device import (
    MEMORY_FILESYSTEMS,
    DeviceInfo,
    IotuneError,
    MountInfo,
    mount_info,
    mountpoint_of,
    scan_device,
)
from .iotune_measure import (
    PhaseResult,
    Workload,
    detect_physical_block_size,
    fmt_size,
    lay_out,
    measure,
    measure_on_shards,
    merge_results,
    saturation_length,
)
from .iotune_report import PHASE_ORDER, Calibration, Reporter, cov, fmt_value

T = TypeVar("T")

#: Default calibration time per disk (s): layout and the four phases, warm-ups included.
DEFAULT_DURATION = 26.0
#: --cost-sizes: request sizes whose IOPS iotune also measures (the scheduler's per-size costs).
DEFAULT_COST_SIZES = (128 << 10,)
#: Seastar's default sequential buffer size.
DEFAULT_SEQ_BUFFER = 1 << 20
#: Seastar caps each shard's random-I/O depth at this.
MAX_DEPTH_PER_SHARD = 128
#: The test file: at most this large, and ~this many bytes per second of --duration (so short runs
#: do not spend their time laying out), and at most half the free space.
MAX_FILE_SIZE = 1 << 30
FILE_BYTES_PER_SECOND = 64 << 20
MIN_FILE_SIZE = 16 << 20
#: Share of --duration the layout may take at most (the file is cut where it got to).
LAYOUT_SHARE = 0.2
#: Warm-up of a phase: this share of its time, within [WARMUP_MIN, WARMUP_MAX] seconds.
WARMUP_SHARE, WARMUP_MIN, WARMUP_MAX = 0.2, 0.2, 2.0
#: Exit statuses.
EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 1, 2, 130, 143
TEST_FILE_RE = re.compile(r"^iotune-(\d+)\.(tmp|probe)$")


# ----------------------------------------------------------------------------------------------
# options

def parse_size(text: str, *, allow_zero: bool = False) -> int:
    """Bytes from "4096", "4k", "4KiB", "1M", "1MiB" (k/M/G/T are powers of 1024, as in Seastar):
    io_properties' rule (iosched.properties.parse_size_text), integers only.

    Must be a multiple of 512 (direct I/O moves whole sectors); 0 only where it means "automatic".
    """
    try:
        n = parse_size_text(text, fraction=False)
    except ValueError:
        n = None
    if not isinstance(n, int):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected bytes, optionally with a "
                                         f"k/M/G suffix (powers of 1024), e.g. 4096, 4k, 1M")
    if n == 0 and allow_zero:
        return 0
    if n <= 0 or n % 512:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be a positive multiple of 512 bytes "
                                         f"(direct I/O moves whole sectors)")
    return n


def _size(text: str) -> int:
    return parse_size(text)


def _size_or_auto(text: str) -> int:
    return parse_size(text, allow_zero=True)


def _sizes(text: str) -> tuple[int, ...]:
    """Comma-separated sizes ("128k,256k"); "none" or "" for none."""
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(sorted({parse_size(t.strip()) for t in text.split(",") if t.strip()}))


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v
    return parse


def _percent(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r}") from None
    if not 0 <= v <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100 (percent), got {text!r}")
    return v


def _grid(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """"25,50,75:0,25,50" → read percentages, write percentages."""
    try:
        r, w = text.split(":")
        reads = tuple(float(x) for x in r.split(",") if x.strip())
        writes = tuple(float(x) for x in w.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid grid {text!r}: expected READ%,...:WRITE%,... "
                                         f"e.g. 25,50,75:0,25,50") from None
    if not reads or not writes or any(not 0 < x <= 200 for x in reads) or any(not 0 <= x <= 200 for x in writes):
        raise argparse.ArgumentTypeError(f"invalid grid {text!r}: read percentages in (0, 200], write in [0, 200]")
    return reads, writes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iotune", allow_abbrev=False,
        description="Calibrate a disk into Seastar's io_properties.yaml: sequential write and read "
                    "bandwidth, random write and read IOPS, measured through ioengine (O_DIRECT).",
        epilog="Exit status: 0 done, 1 error, 2 bad usage, 130 interrupted (Ctrl-C), 143 terminated. "
               "The test file (iotune-<pid>.tmp in the evaluation directory) is removed on every exit "
               "but SIGKILL; a later run removes such leftovers.")
    s = p.add_argument_group("Seastar's options")
    s.add_argument("--evaluation-directory", action="append", required=True, metavar="DIR",
                   help="directory to run the evaluation in (repeatable; one evaluation per mount point)")
    s.add_argument("--properties-file", metavar="PATH",
                   help="write the io_properties YAML here (without it the YAML is printed)")
    s.add_argument("--options-file", metavar="PATH",
                   help="write Seastar's options file here, pointing at --properties-file")
    s.add_argument("--format", choices=("seastar", "envfile"), default="seastar",
                   help="options file format: seastar (io-properties-file=PATH) or envfile "
                        "(SEASTAR_IO=\"--io-properties-file=PATH\"); default seastar")
    s.add_argument("--duration", type=_positive_float, default=DEFAULT_DURATION, metavar="SECONDS",
                   help=f"time to calibrate one disk, layout and the four phases with their warm-ups "
                        f"(default {DEFAULT_DURATION:g}); --saturation, --detect-physical-block-size, "
                        f"--compare-fio, --latency-map and --repeat add to it")
    s.add_argument("--smp", type=_count(1), default=None, metavar="N",
                   help="shards (Seastar's --smp): the random phases run on N shard processes at once, "
                        "one per core, each with its own reactor, the depth split over them (each at most "
                        "128); the sequential phases (little CPU) run on one "
                        "(default: one per CPU of --cpuset or of the process's affinity, as Seastar's "
                        "iotune runs on every core: the disk's rate, not one core's)")
    s.add_argument("--accuracy", type=_percent, default=3.0, metavar="PERCENT",
                   help="warn when a phase's per-second spread (stdev/mean) exceeds this (default 3; "
                        "0 always prints the spread)")
    s.add_argument("--cost-sizes", type=_sizes, default=DEFAULT_COST_SIZES, metavar="SIZES",
                   help="also measure sequential IOPS at these request sizes (comma-separated; 'none': "
                        "skip), written as read/write_iops_by_size so the scheduler charges each size what "
                        "it costs, not what the 4k IOPS and 1M bandwidth imply (ioengine's keys: Seastar "
                        "does not read them); default 128k")
    s.add_argument("--saturation", choices=("read", "write", "both"), default=None,
                   help="also measure the saturation length(s): the smallest sequential request that alone "
                        "keeps the disk at full bandwidth (slow: several extra runs)")
    s.add_argument("--random-read-io-buffer-size", type=_size_or_auto, default=0, metavar="BYTES",
                   help="random read buffer size (default: the device's minimum I/O size, at least its "
                        "physical block)")
    s.add_argument("--random-write-io-buffer-size", type=_size_or_auto, default=0, metavar="BYTES",
                   help="random write buffer size (default: as for reads)")
    s.add_argument("--sequential-read-buffer-size", "--sequential_read_buffer_size", type=_size,
                   default=DEFAULT_SEQ_BUFFER, metavar="BYTES", dest="sequential_read_buffer_size",
                   help="sequential read buffer size (default 1M)")
    s.add_argument("--sequential-write-buffer-size", "--sequential_write_buffer_size", type=_size,
                   default=DEFAULT_SEQ_BUFFER, metavar="BYTES", dest="sequential_write_buffer_size",
                   help="sequential write buffer size (default 1M)")
    s.add_argument("--force-io-depth", type=_count(0), default=0, metavar="N",
                   help="random-I/O depth, exactly (split over --smp shards; no 128 cap); 0: from the "
                        "device's queue depth (default)")
    s.add_argument("--detect-physical-block-size", action="store_true",
                   help="find the physical block size from random-write IOPS at growing sizes and write "
                        "it to the properties file (sizes below the reported block cannot be issued)")
    s.add_argument("--fs-check", action="store_true",
                   help="only check the directories (filesystem, O_DIRECT, free space) and exit")
    b = p.add_argument_group("beyond Seastar")
    b.add_argument("--compare-fio", action="store_true",
                   help="after each phase run fio on the same file and pattern; print both and the ratio")
    b.add_argument("--latency-map", metavar="PREFIX",
                   help="measure read p95 over a grid of loads (read IOPS %% x write bandwidth %% of the "
                        "calibrated maxima); write PREFIX.png (heatmap) and PREFIX.csv")
    b.add_argument("--latency-map-grid", type=_grid, default=((25.0, 50.0, 75.0), (0.0, 25.0, 50.0)),
                   metavar="R,..:W,..", help="the map's read and write percentages (default 25,50,75:0,25,50)")
    b.add_argument("--latency-map-seconds", type=_positive_float, default=2.0, metavar="SECONDS",
                   help="time per cell of the latency map (default 2)")
    b.add_argument("--repeat", type=_count(1), default=1, metavar="N",
                   help="run the calibration N times (one layout); report each value's coefficient of "
                        "variation and write the medians (default 1)")
    b.add_argument("--file-size", type=_size, default=None, metavar="BYTES",
                   help=f"test file size (default: {fmt_size(FILE_BYTES_PER_SECOND)} per second of "
                        f"--duration, at most {fmt_size(MAX_FILE_SIZE)} and half the free space)")
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a progress bar on stderr (default: when stderr is a terminal)")
    add_reactor_arguments(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.options_file and not args.properties_file:
        p.error("--options-file needs --properties-file (the options file points at it)")
    try:
        args.reactor_options = reactor_options_from_args(args)
        cpuset = args.smp_cpuset
        if args.smp is None:  # every core (one reactor cannot drive a fast disk at 4 KiB)
            args.smp = len(SmpOptions(cpuset=cpuset).cpus(every=True))
        SmpOptions(smp=args.smp, cpuset=cpuset).cpus()  # enough CPUs for the shards, before anything runs
    except ValueError as e:
        p.error(str(e))
    check_io_properties(args.reactor_options)
    return args


class UsageError(Exception):
    """A bad option value iotune reports as one line, ``iotune: error: <message>``, exit status 2."""


def check_io_properties(options: ReactorOptions) -> None:
    """Load the reactor's io_properties now, so a bad file is named before anything runs
    (raises UsageError with the file and the problem on one line)."""
    try:
        load_properties(options)
    except IoPropertiesError as e:
        raise UsageError(f"bad io properties: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise UsageError(f"cannot read the io properties file {options.io_properties_file!r}: "
                         f"{e.strerror or e}") from None


# ----------------------------------------------------------------------------------------------
# signals: SIGINT and SIGTERM cancel the work, then unwind (KeyboardInterrupt / Terminated); see run_engine


class Terminated(BaseException):
    """SIGTERM arrived: unwind like KeyboardInterrupt, removing the test file."""


_terminated = False


def _raise_terminated(signum: int, frame: Any) -> None:
    global _terminated
    _terminated = True
    raise Terminated()


def _record_terminated(signum: int, frame: Any) -> None:
    """SIGTERM while a loop shuts down: recorded; run_engine raises Terminated once it is closed."""
    global _terminated
    _terminated = True


def run_engine(coro: Coroutine[Any, Any, T], options: ReactorOptions, smp: int = 1,
               cpuset: str | None = None) -> T:
    """``ioengine.run(coro)`` with SIGTERM cancelling it cleanly (finally blocks, file close, reactor close).

    SIGINT is ours for the whole call, not asyncio's: asyncio's runner puts Python's default
    handler back at the end of each run, before it closes the loop, so a Ctrl-C then raised
    KeyboardInterrupt inside the loop's shutdown and left a half-closed loop behind ("Exception
    ignored in BaseEventLoop.__del__"). Here, while the work runs, the first Ctrl-C cancels it
    and a second raises KeyboardInterrupt; during set-up and shutdown a Ctrl-C is only recorded,
    and KeyboardInterrupt is raised once ioengine.run has returned.
    """
    state: dict[str, Any] = {"task": None, "loop": None, "sigints": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        state["sigints"] += 1
        task, loop = state["task"], state["loop"]
        if task is None or task.done():
            return  # set-up or shutdown: raised after ioengine.run returns
        if state["sigints"] == 1:
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake the loop (asyncio's runner does the same)
            return
        raise KeyboardInterrupt()

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_term() -> None:
            global _terminated
            _terminated = True
            if task is not None:
                task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, on_term)
        state["loop"], state["task"] = loop, task
        try:
            return await coro
        finally:
            state["task"] = None
            # Hand SIGTERM back to a plain Python handler before the loop closes: the loop's
            # close() shuts its self-pipe before it removes its signal handlers, and a signal
            # in between would be written to the closed descriptor ("Exception ignored when
            # trying to write to the signal wakeup fd").
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)
                signal.signal(signal.SIGTERM, _record_terminated)

    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        previous_int = None  # started with Ctrl-C ignored (a shell's background job): it stays so
    else:
        try:
            signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread: asyncio's own handling (none) applies
            previous_int = None
    try:
        if smp > 1:  # shard 0 runs guarded(); the other shards answer its calls
            return ioengine.run(guarded(), smp=smp, cpuset=cpuset, **options.as_dict())
        return ioengine.run(guarded(), **options.as_dict())
    except IoPropertiesError as e:  # checked at start-up; a file changed since then
        raise UsageError(f"bad io properties: {' '.join(str(e).split())}") from None
    except asyncio.CancelledError:
        if _terminated:
            raise Terminated() from None
        if state["sigints"]:
            raise KeyboardInterrupt() from None
        raise
    finally:
        if previous_int is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, previous_int)
        coro.close()  # never started if the reactor could not be made: no "never awaited" warning
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # the loop's close reset it
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, _raise_terminated)
        if _terminated:
            raise Terminated()
        if state["sigints"]:
            raise KeyboardInterrupt()


# ----------------------------------------------------------------------------------------------
# pre-flight


@dataclass(slots=True)
class Target:
    """A directory that passed the checks, and what it sits on."""

    directory: str
    mountpoint: str
    mount: MountInfo | None
    device: DeviceInfo
    avail: int


def check_directory(directory: str) -> Target:
    """Everything that can be known without I/O; raises IotuneError naming the directory and the problem."""
    d = directory
    try:
        st = os.stat(d)
    except FileNotFoundError:
        raise IotuneError(f"evaluation directory {d!r} does not exist") from None
    except OSError as e:
        raise IotuneError(f"evaluation directory {d!r} cannot be examined: {e.strerror}") from None
    if not os.path.isdir(d):
        raise IotuneError(f"evaluation directory {d!r} is not a directory")
    mi = mount_info(d)
    if mi is not None and mi.fstype in MEMORY_FILESYSTEMS:
        raise IotuneError(f"evaluation directory {d!r} is on {mi.fstype} (mounted at {mi.mountpoint}), which "
                          f"lives in memory: there is no disk under it to calibrate")
    if mi is not None and mi.read_only:
        raise IotuneError(f"evaluation directory {d!r} is on a read-only filesystem ({mi.mountpoint} is mounted "
                          f"read-only): iotune must write a test file there")
    if not os.access(d, os.W_OK | os.X_OK):
        raise IotuneError(f"evaluation directory {d!r} is not writable by this user: iotune must create a "
                          f"test file there")
    vfs = os.statvfs(d)
    avail = vfs.f_bavail * vfs.f_frsize
    if avail < 2 * MIN_FILE_SIZE:
        raise IotuneError(f"evaluation directory {d!r} has only {avail >> 20} MiB free; iotune needs at least "
                          f"{(2 * MIN_FILE_SIZE) >> 20} MiB for its test file")
    return Target(d, mountpoint_of(d), mi, scan_device(st.st_dev), avail)


async def _probe_direct_io(directory: str, path: str) -> tuple[int, int]:
    """Create a file with O_DIRECT, write a block and read it back; (read, write) alignment."""
    try:
        f = await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE | OpenFlags.EXCLUSIVE)
    except OSError as e:
        raise _io_error(directory, "cannot create a test file", e) from None
    try:
        if not f.direct:
            raise IotuneError(f"evaluation directory {directory!r}: the filesystem does not support O_DIRECT "
                              f"(the file opened buffered): there is no direct I/O to calibrate")
        n = f.disk_write_dma_alignment
        buf = f.allocate_buffer(n)
        buf[:] = os.urandom(n)
        back = f.allocate_buffer(n)
        try:
            await f.dma_write(0, buf)
            got = await f.dma_read(0, back)
            if got != n or bytes(back) != bytes(buf):
                raise IotuneError(f"evaluation directory {directory!r}: a direct write read back differently "
                                  f"({got} of {n} bytes)")
        except OSError as e:
            raise _io_error(directory, "direct I/O failed", e) from None
        finally:
            buf.release()
            back.release()
        return f.disk_read_dma_alignment, f.disk_write_dma_alignment
    finally:
        await f.close()


def _io_error(directory: str, what: str, e: OSError) -> IotuneError:
    why = {errno.EROFS: "the filesystem is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the device",
           errno.EDQUOT: "disk quota exceeded",
           errno.EINVAL: "the filesystem refuses O_DIRECT"}.get(e.errno or 0, e.strerror or str(e))
    return IotuneError(f"evaluation directory {directory!r}: {what}: {why} ({e})")


def remove_stale_files(directory: str, rep: Reporter) -> None:
    """Remove test files left by iotune runs that were killed (SIGKILL) and whose process is gone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = TEST_FILE_RE.match(name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        if os.path.exists(f"/proc/{m.group(1)}"):
            continue  # that iotune may still be running
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            rep.warn(f"removed {os.path.join(directory, name)}, left by an iotune that was killed")


class TestFile:
    """The test file's path; removed on leaving the ``with`` block, however it is left."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: str, suffix: str = "tmp") -> None:
        self.path = os.path.join(directory, f"iotune-{os.getpid()}.{suffix}")

    def __enter__(self) -> TestFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# ----------------------------------------------------------------------------------------------
# the calibration


@dataclass(slots=True)
class DiskResult:
    target: Target
    file_size: int
    runs: list[Calibration]
    properties: DiskProperties
    saturation: dict[str, int] = field(default_factory=dict)
    physical_block_size: int | None = None
    latency_map: Any = None
    #: "read"/"write" -> {request size: IOPS} (--cost-sizes)
    by_size: dict[str, dict[int, float]] = field(default_factory=dict)


def random_depth(total: int, smp: int, forced: bool) -> int:
    """Seastar's per-shard split of the device depth (each shard at most 128 unless forced), summed."""
    depth = 0
    for shard in range(smp):
        d = total // smp + (1 if shard < total % smp else 0)
        depth += d if forced else min(d, MAX_DEPTH_PER_SHARD)
    return max(depth, 1)


def phase_times(remaining: float) -> tuple[float, float]:
    """(warm-up, measured window) of each of the four phases sharing ``remaining`` seconds."""
    per = max(remaining, 4 * 2 * WARMUP_MIN) / 4
    warm = min(max(per * WARMUP_SHARE, WARMUP_MIN), WARMUP_MAX)
    return warm, per - warm


def file_size_for(args: argparse.Namespace, avail: int, bs: int) -> int:
    if args.file_size:
        size = args.file_size
        if size > avail // 2:
            raise IotuneError(f"--file-size {fmt_size(size)} is more than half the free space ({avail >> 20} MiB)")
    else:
        size = min(MAX_FILE_SIZE, max(MIN_FILE_SIZE, int(args.duration * FILE_BYTES_PER_SECOND)), avail // 2)
    size -= size % bs
    if size < bs:
        raise IotuneError(f"the test file ({size} bytes) would be smaller than one sequential buffer ({bs})")
    return size


class _Plan:
    """The workloads of one disk."""

    def __init__(self, args: argparse.Namespace, dev: DeviceInfo) -> None:
        forced = args.force_io_depth > 0
        depth = random_depth(args.force_io_depth or dev.max_iodepth, args.smp, forced)
        seq_depth = 4 * dev.disks_per_array
        self.workloads = {
            "seq_write": Workload("seq_write", args.sequential_write_buffer_size, seq_depth),
            "seq_read": Workload("seq_read", args.sequential_read_buffer_size, seq_depth),
            "rand_write": Workload("rand_write", args.random_write_io_buffer_size or dev.minimum_io_size, depth),
            "rand_read": Workload("rand_read", args.random_read_io_buffer_size or dev.minimum_io_size, depth),
        }
        self.depth = depth


def _phase_line(wl: Workload, res: PhaseResult, accuracy: float) -> str:
    what = "bandwidth" if wl.sequential else "IOPS"
    spread = res.spread * 100
    note = f" (spread {spread:.1f} %)" if accuracy == 0 or spread > accuracy else ""
    return f"Measuring {wl.title} {what} ({fmt_size(wl.bs)}, depth {wl.depth}): {fmt_value(wl.phase, res.value)}{note}"


def calibrate(args: argparse.Namespace, target: Target, rep: Reporter) -> DiskResult:
    opts: ReactorOptions = args.reactor_options
    dev = target.device
    plan = _Plan(args, dev)
    wls = plan.workloads
    for note in dev.notes:
        rep.warn(note)
    for hint in dev.hints(max(args.sequential_read_buffer_size, args.sequential_write_buffer_size)):
        rep.warn(hint)
    leaf = dev.leaves[0] if dev.leaves else None
    rep.info(f"Disk {dev.names} ({dev.device}) under {target.directory}: queue depth {dev.max_iodepth}"
             f"{f' ({leaf.depth_source})' if leaf and len(dev.leaves) == 1 else ''}, minimum I/O size "
             f"{dev.minimum_io_size}, physical block {dev.physical_block_size}; random depth {plan.depth}"
             f"{' (forced)' if args.force_io_depth else ''}, mount point {target.mountpoint}")
    if args.compare_fio:
        from .iotune_fio import fio_available

        version = fio_available()
        if version is None:
            raise IotuneError("--compare-fio: fio is not installed (install the 'fio' package)")
        rep.info(f"Comparing with {version}")
    size = file_size_for(args, target.avail, wls["seq_write"].bs)
    t_begin = time.perf_counter()
    budget = max(args.duration * LAYOUT_SHARE, 0.2)
    with TestFile(target.directory) as tf, contextlib.ExitStack() as stack:
        fio_iomem = _fio_memory(wls, opts, stack, rep) if args.compare_fio else {}
        with rep.task("laying out the test file", budget) as cb:
            size, took = run_engine(lay_out(tf.path, size, wls["seq_write"].bs, wls["seq_write"].depth, budget,
                                            progress=cb), opts)
        if size < MIN_FILE_SIZE:
            rep.warn(f"only {fmt_size(size)} could be laid out in {took:.1f} s: a slow disk, or --duration too "
                     f"short; random figures over such a small file may be flattered by caches")
        rep.info(f"Laid out a {fmt_size(size) if size % (1 << 20) == 0 else f'{size} B'} test file in {took:.1f} s")
        warm, meas = phase_times(args.duration - (time.perf_counter() - t_begin))
        runs: list[Calibration] = []
        for i in range(args.repeat):
            if args.repeat > 1:
                rep.info(f"Run {i + 1} of {args.repeat}")
            runs.append(_one_pass(args, tf.path, size, wls, warm, meas, i + 1, rep, fio_iomem))
        result = DiskResult(target, size, runs, _properties(target, runs))
        if args.cost_sizes:
            _cost_sizes(args, tf.path, size, wls, runs, warm, meas, result, rep)
        if args.saturation:
            _saturation(args, tf.path, size, wls, runs, warm, meas, result, rep)
        if args.detect_physical_block_size:
            _detect_pbs(args, tf.path, size, plan.depth, dev, result, rep)
        result.properties = _properties(target, runs, result.saturation, result.physical_block_size,
                                        result.by_size)
        if args.latency_map:
            from .iotune_latency import latency_map

            result.latency_map = latency_map(args, tf.path, size, wls, result.properties, dev, rep, run_engine)
    return result


def _fio_memory(wls: dict[str, Workload], opts: ReactorOptions, stack: contextlib.ExitStack,
                rep: Reporter) -> dict[str, str]:
    """fio's ``--iomem`` per phase, as ioengine's buffers are (hugetlb pages where the pool's are
    huge pages: the 1 MiB phases); the pages are reserved on ``stack`` (given back when it closes)
    and what was reserved is said. If they cannot be had, fio keeps malloc and a warning says why."""
    from ioengine.bench.hugepages import HUGE_IOMEM, HugePageReservation, fio_iomem_for, hugetlb_pages_for

    from .iotune_fio import fio_jobs

    iomem = {ph: fio_iomem_for(wl.bs, options=opts) for ph, wl in wls.items()}
    pages = max((hugetlb_pages_for(wl.bs, wl.depth, fio_jobs(wl, opts.backend, opts.threads))
                 for ph, wl in wls.items() if iomem[ph] in HUGE_IOMEM), default=0)
    if not pages:
        return iomem
    got = stack.enter_context(HugePageReservation(pages))
    if got.message:
        rep.info(got.message)
    if not got.ok:
        huge = [wls[ph].title for ph in iomem if iomem[ph] in HUGE_IOMEM]
        rep.warn(f"fio keeps malloc'd buffers in the {' and '.join(huge)} phases ({pages} hugetlb page(s) "
                 f"needed: {got.reason}); ioengine's are huge pages, so those ratios compare page layouts too")
        return {ph: "malloc" for ph in iomem}
    rep.info("fio's buffers: " + ", ".join(f"{wls[ph].title} {kind}" for ph, kind in iomem.items()))
    return iomem


def _one_pass(args: argparse.Namespace, path: str, size: int, wls: dict[str, Workload], warm: float, meas: float,
              seed: int, rep: Reporter, fio_iomem: dict[str, str] | None = None) -> Calibration:
    """The four phases once. With --compare-fio each phase runs A-B-A: ioengine for half the window,
    fio for the whole window, ioengine for the other half (pooled), so slow drifts of a shared machine
    weigh on both sides alike; the halves cost one more warm-up per phase."""
    opts: ReactorOptions = args.reactor_options
    cal = Calibration()
    for ph in PHASE_ORDER:
        wl = wls[ph]
        label = f"{wl.title} ({fmt_size(wl.bs)}, QD{wl.depth})"
        if not args.compare_fio:
            with rep.task(label, warm + meas) as cb:
                res = run_engine(_phase(args, path, wl, size, warm, meas, seed, cb), opts, _shards(args, wl),
                                 args.smp_cpuset)
        else:
            halves = []
            for half in (1, 2):
                with rep.task(f"{label}, half {half}", warm + meas / 2) as cb:
                    halves.append(run_engine(_phase(args, path, wl, size, warm, meas / 2, seed + 100 * half, cb),
                                             opts, _shards(args, wl), args.smp_cpuset))
                if half == 1:
                    cal.fio[ph] = _fio_phase(path, size, wl, warm, meas, halves[0].backend, opts, rep,
                                             (fio_iomem or {}).get(ph, "malloc"))
            res = merge_results(halves)
        cal.phases[ph] = res
        rep.info(_phase_line(wl, res, args.accuracy))
        if args.accuracy and res.spread * 100 > args.accuracy:
            rep.warn(f"{wl.title}: the per-second spread is {res.spread * 100:.1f} %, above --accuracy "
                     f"{args.accuracy:g} %: the disk or the machine is noisy (a longer --duration averages more)")
        if res.cpu_bound:
            rep.warn(f"{wl.title}: the event loop used {res.loop_cpu * 100:.0f} % of a core: the figure is "
                     f"ioengine's ceiling on this CPU, not necessarily the disk's"
                     + ("" if args.compare_fio else " (--compare-fio shows what fio gets)"))
        fig = cal.fio.get(ph)
        if hasattr(fig, "value"):
            ratio = res.value / fig.value if fig.value else math.nan
            rep.info(f"  fio: {fmt_value(ph, fig.value)}; ioengine/fio {ratio:.2f}x")
    return cal


def _shards(args: argparse.Namespace, wl: Workload) -> int:
    """Shards a phase runs on: the random ones on all (--smp: at 4 KiB one core cannot keep up
    with a fast disk), the sequential ones on one. A stream of a few large requests needs little
    CPU, and split over N shards it becomes N streams at 1/N of the depth, which is not the
    pattern the figure (or fio's job, for --compare-fio) describes: this virtio disk served two
    1 MiB streams at depth 2 5-10 % slower than one at depth 4 (docs/benchmarks.md)."""
    return 1 if wl.sequential else args.smp


def _phase(args: argparse.Namespace, path: str, wl: Workload, size: int, warm: float, meas: float, seed: int,
           cb: Any) -> Coroutine[Any, Any, PhaseResult]:
    """One phase's measurement: in this reactor, or on --smp shards together."""
    if _shards(args, wl) > 1:
        return measure_on_shards(path, wl, size, warm, meas, args.smp, seed=seed, progress=cb)
    return measure(path, wl, size, warm, meas, seed=seed, progress=cb)


def _fio_phase(path: str, size: int, wl: Workload, warm: float, meas: float, backend: str, opts: ReactorOptions,
               rep: Reporter, iomem: str = "malloc") -> object:
    """fio's figure for one phase, or the first line of its error."""
    from .iotune_fio import FioError, run_fio_workload

    with rep.task(f"fio: {wl.title}", warm + meas):
        try:
            return run_fio_workload(path, size, wl, warm, meas, backend, opts.threads, iomem)
        except FioError as e:
            rep.warn(f"fio failed on the {wl.title} phase: {e}")
            return str(e).splitlines()[0]


def _median(runs: list[Calibration], phase: str, attr: str) -> float:
    return statistics.median(getattr(r.phases[phase], attr) for r in runs)


def _properties(target: Target, runs: list[Calibration], saturation: dict[str, int] | None = None,
                pbs: int | None = None, by_size: dict[str, dict[int, float]] | None = None) -> DiskProperties:
    sat = saturation or {}
    sizes = by_size or {}

    def table(kind: str) -> tuple[tuple[int, float], ...] | None:
        t = {n: v for n, v in (sizes.get(kind) or {}).items() if v > 0}  # a size nothing completed at: unmeasured
        return tuple(sorted(t.items())) if len(t) >= 2 else None

    return DiskProperties(
        mountpoints=(target.mountpoint,),
        read_iops=_median(runs, "rand_read", "iops"),
        read_bandwidth=_median(runs, "seq_read", "bandwidth"),
        write_iops=_median(runs, "rand_write", "iops"),
        write_bandwidth=_median(runs, "seq_write", "bandwidth"),
        read_saturation_length=sat.get("read"),
        write_saturation_length=sat.get("write"),
        physical_block_size=pbs,
        read_iops_by_size=table("read"),
        write_iops_by_size=table("write"),
    )


def _cost_sizes(args: argparse.Namespace, path: str, size: int, wls: dict[str, Workload], runs: list[Calibration],
                warm: float, meas: float, result: DiskResult, rep: Reporter) -> None:
    """IOPS at each --cost-sizes size (sequential, at the sequential depth), beside the random
    phase's (its buffer size) and the sequential phase's (its bandwidth over its buffer size)."""
    for kind in ("write", "read"):
        seq, rnd = wls[f"seq_{kind}"], wls[f"rand_{kind}"]
        table = {rnd.bs: _median(runs, rnd.phase, "iops"), seq.bs: _median(runs, seq.phase, "bandwidth") / seq.bs}
        for n in args.cost_sizes:
            if n in table:
                continue
            wl = Workload(seq.phase, n, seq.depth)
            with rep.task(f"{kind} IOPS at {fmt_size(n)}", warm + meas) as cb:
                res = run_engine(_phase(args, path, wl, size, warm, meas, 1, cb), args.reactor_options,
                                 _shards(args, wl), args.smp_cpuset)
            if res.iops <= 0:
                # Nothing completed in the window (a very short --duration on a busy disk): a
                # size not measured is left out, not written as free.
                rep.warn(f"Measuring sequential {kind} IOPS at {fmt_size(n)} (depth {wl.depth}): no I/O completed "
                         f"in {meas:g} s; left out of {kind}_iops_by_size (a longer --duration measures it)")
                continue
            table[n] = res.iops
            rep.info(f"Measuring sequential {kind} IOPS at {fmt_size(n)} (depth {wl.depth}): {res.iops:,.0f}")
        result.by_size[kind] = table


def _saturation(args: argparse.Namespace, path: str, size: int, wls: dict[str, Workload], runs: list[Calibration],
                warm: float, meas: float, result: DiskResult, rep: Reporter) -> None:
    kinds = ("write", "read") if args.saturation == "both" else (args.saturation,)
    for kind in kinds:
        ph = f"seq_{kind}"
        bw = _median(runs, ph, "bandwidth")
        spread = max(r.phases[ph].spread for r in runs)
        threshold = bw * (1 - min(spread, 0.5))
        start = wls[ph].bs // 2
        min_bs = wls[f"rand_{kind}"].bs

        with rep.task(f"{kind} saturation length", 4 * (warm + meas) / 2):
            length, steps = run_engine(saturation_length(path, ph, max(start, min_bs), min_bs, threshold, size,
                                                         warm / 2, meas / 2), args.reactor_options)
        for s in steps:
            rep.info(f"  {kind} at depth 1, {fmt_size(s.workload.bs)}: {s.bandwidth / 1e6:,.0f} MB/s "
                     f"(threshold {threshold / 1e6:,.0f} MB/s)")
        result.saturation[kind] = length
        rep.info(f"Measuring {kind} saturation length: {length}")


def _detect_pbs(args: argparse.Namespace, path: str, size: int, depth: int, dev: DeviceInfo, result: DiskResult,
                rep: Reporter) -> None:
    each = max(args.duration * 0.05, 0.5)
    pbs, steps, skipped = run_engine(detect_physical_block_size(path, size, depth, min(each * 0.3, 1.0), each),
                                     args.reactor_options)
    for s in steps:
        rep.info(f"  random writes of {s.workload.bs} bytes: {s.iops:,.0f} IOPS")
    if skipped:
        rep.info(f"  (not tried: {', '.join(map(str, skipped))} bytes, below the write alignment ioengine uses "
                 f"for this file, the reported physical block)")
    reported = dev.physical_block_size
    if pbs is not None and reported and pbs != reported:
        rep.warn(f"the detected physical block size {pbs} differs from the reported {reported}: the disk may lie "
                 f"about it; writing the detected one")
    result.physical_block_size = pbs
    rep.info(f"Detected physical block size: {pbs} bytes")


# ----------------------------------------------------------------------------------------------
# output


def options_file_text(fmt: str, properties_file: str) -> str:
    """Seastar's options file: a config-file line (seastar) or a shell/systemd environment file (envfile)."""
    path = os.path.abspath(properties_file)
    if fmt == "seastar":
        return f"io-properties-file={path}\n"
    return f'SEASTAR_IO="--io-properties-file={path}"\n'


def write_outputs(args: argparse.Namespace, disks: list[DiskProperties], rep: Reporter) -> None:
    if args.properties_file:
        rep.info(f"Writing result to {args.properties_file}")
        try:
            save_io_properties(disks, args.properties_file)
        except OSError as e:
            raise IotuneError(f"cannot write the properties file {args.properties_file!r}: {e.strerror or e}; "
                              f"the values were:\n{dump_io_properties(disks)}") from None
    else:
        rep.info("io_properties (no --properties-file given, so not written):\n" + dump_io_properties(disks).rstrip())
    if args.options_file:
        rep.info(f"Writing result to {args.options_file}")
        try:
            with open(args.options_file, "w", encoding="utf-8") as f:
                f.write(options_file_text(args.format, args.properties_file))
        except OSError as e:
            raise IotuneError(f"cannot write the options file {args.options_file!r}: {e.strerror or e}") from None


def _targets(args: argparse.Namespace, rep: Reporter) -> list[Target]:
    """Check every directory; keep one per mount point (Seastar evaluates each mount point once)."""
    by_mount: dict[str, Target] = {}
    for d in args.evaluation_directory:
        t = check_directory(d)
        if t.mountpoint in by_mount:
            rep.info(f"{d} is on {t.mountpoint}, already evaluated in {by_mount[t.mountpoint].directory}")
            continue
        by_mount[t.mountpoint] = t
    return list(by_mount.values())


def _run(args: argparse.Namespace, rep: Reporter) -> int:
    targets = _targets(args, rep)
    for t in targets:
        remove_stale_files(t.directory, rep)
        with TestFile(t.directory, "probe") as probe:
            ralign, walign = run_engine(_probe_direct_io(t.directory, probe.path), args.reactor_options)
        fs = f"{t.mount.fstype} on {t.mount.source}" if t.mount else "unknown filesystem"
        rep.info(f"{t.directory} passed sanity checks ({fs}, {t.avail / 1e9:,.1f} GB free, direct I/O with read "
                 f"alignment {ralign}, write alignment {walign})")
    if args.fs_check:
        return 0
    results = []
    t0 = time.perf_counter()
    with rep.progress_bar():
        for t in targets:
            results.append(calibrate(args, t, rep))
    elapsed = time.perf_counter() - t0
    for r in results:
        title = f"{r.target.mountpoint} ({r.target.device.names}), {fmt_size(r.file_size)} test file"
        rep.summary(title, r.runs, args.compare_fio)
        if len(r.runs) > 1:
            parts = []
            for ph in PHASE_ORDER:
                c = cov([run.phases[ph].value for run in r.runs])
                fio = [f.value for f in (run.fio.get(ph) for run in r.runs) if hasattr(f, "value")]
                parts.append(f"{ph} {c * 100:.1f} %" + (f" (fio {cov(fio) * 100:.1f} %)" if len(fio) > 1 else ""))
            rep.info(f"Coefficient of variation over {len(r.runs)} runs: " + ", ".join(parts))
    rep.info(f"Calibrated in {elapsed:.1f} s")
    write_outputs(args, [r.properties for r in results], rep)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"iotune: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    rep = Reporter(progress=args.progress)
    global _terminated
    _terminated = False
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args, rep)
    except KeyboardInterrupt:
        print("iotune: interrupted; the test file was removed", file=sys.stderr, flush=True)
        return EXIT_SIGINT
    except Terminated:
        print("iotune: terminated; the test file was removed", file=sys.stderr, flush=True)
        return EXIT_SIGTERM
    except IotuneError as e:
        print(f"iotune: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except UsageError as e:
        print(f"iotune: error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except ioengine.BackendUnavailableError as e:
        print(f"iotune: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except OSError as e:
        print(f"iotune: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    finally:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
