"""iotune: what the evaluation directory sits on — mount, filesystem, block device(s), sysfs hints.

Everything here is read from ``/proc/self/mountinfo`` and ``/sys`` with plain, quick system calls
before any I/O is issued; nothing here measures. The device of a directory is resolved from its
``st_dev`` through ``/sys/dev/block/MAJ:MIN``: a partition resolves to its parent disk, a stacked
device (md, dm, LVM) to the disks under it (``slaves/``), whose queue depths add up, as in
Seastar's iotune.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

#: Filesystems that live in memory: there is no disk under them to calibrate.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})
#: Depth assumed when sysfs says nothing (Seastar's guess too).
GUESSED_IODEPTH = 128
#: Smallest transfer iotune issues, whatever sysfs says (one sector).
MIN_TRANSFER = 512


class IotuneError(Exception):
    """A problem iotune reports as ``iotune: error: <message>`` with exit status 1."""


@dataclass(frozen=True, slots=True)
class MountInfo:
    """The mount holding a path, from /proc/self/mountinfo."""

    mountpoint: str
    fstype: str
    source: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class LeafDevice:
    """One disk at the bottom of the device stack (partitions resolved to their disk)."""

    name: str
    sysfs: str
    nr_requests: int | None
    queue_depth: int | None  # device/queue_depth (SCSI), when present
    minimum_io_size: int
    physical_block_size: int
    logical_block_size: int
    scheduler: str | None
    nomerges: int | None
    write_cache: str | None
    rotational: bool | None
    max_segments: int | None = None

    @property
    def display(self) -> str:
        """The short sysfs path (/sys/block/NAME) when it exists, else the canonical one."""
        short = f"/sys/block/{self.name}"
        return short if os.path.exists(short) else self.sysfs

    @property
    def depth(self) -> int:
        return self.nr_requests or self.queue_depth or GUESSED_IODEPTH

    @property
    def depth_source(self) -> str:
        if self.nr_requests:
            return f"{self.display}/queue/nr_requests"
        if self.queue_depth:
            return f"{self.display}/device/queue_depth"
        return f"guessed ({GUESSED_IODEPTH}): sysfs gave no queue depth"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What iotune derives from the device stack under a directory."""

    device: str  # "MAJ:MIN" of the directory's st_dev
    leaves: tuple[LeafDevice, ...]
    #: Sum of the leaves' queue depths (Seastar's max_iodepth), before --force-io-depth.
    max_iodepth: int
    #: Random-I/O buffer size: the largest minimum_io_size, never below the physical block.
    minimum_io_size: int
    physical_block_size: int | None
    notes: tuple[str, ...] = field(default=())  # why values were guessed, if they were

    @property
    def disks_per_array(self) -> int:
        return max(1, len(self.leaves))

    @property
    def names(self) -> str:
        return ",".join(leaf.name for leaf in self.leaves) or self.device

    def hints(self, sequential_buffer: int = 0) -> list[str]:
        """Block-layer settings that can skew a calibration, as warnings (Seastar warns the first three)."""
        out = []
        for leaf in self.leaves:
            q = f"{leaf.display}/queue"
            if leaf.scheduler is not None and leaf.scheduler not in ("none", "noop"):
                out.append(f"{leaf.name}: the I/O scheduler is {leaf.scheduler!r} ({q}/scheduler); 'none' is "
                           f"recommended while calibrating, or its reordering and merging end up in the figures")
            if leaf.nomerges is not None and leaf.nomerges != 2:
                out.append(f"{leaf.name}: nomerges is {leaf.nomerges} ({q}/nomerges); 2 turns request merging "
                           f"off, which otherwise can flatter sequential and adjacent random I/O")
            if leaf.write_cache == "write back":
                out.append(f"{leaf.name}: the write cache is 'write back' ({q}/write_cache): writes are "
                           f"acknowledged from the device's cache, so the write figures may not be sustained")
            page = 4096
            if leaf.max_segments and sequential_buffer > leaf.max_segments * page:
                out.append(f"{leaf.name}: a request holds at most {leaf.max_segments} segments ({q}/max_segments), "
                           f"fewer than the {sequential_buffer // page} pages of a {sequential_buffer >> 10} KiB "
                           f"buffer: unless its pages happen to be physically contiguous, each sequential request "
                           f"is split in two, and the bandwidth can swing with the memory layout")
        return out


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mount_info(path: str) -> MountInfo | None:
    """The mount holding ``path`` (the last, deepest mount whose mount point prefixes it)."""
    real = os.path.realpath(path)
    best: MountInfo | None = None
    best_len = -1
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        a, b = left.split(), right.split()
        if len(a) < 6 or len(b) < 2:
            continue
        mp = _unescape(a[4])
        inside = real == mp or mp == "/" or real.startswith(mp.rstrip("/") + "/")
        if inside and len(mp) >= best_len:  # ">=": a later mount on the same point hides earlier ones
            best_len = len(mp)
            best = MountInfo(mp, b[0], _unescape(b[1]), "ro" in a[5].split(","))
    return best


def mountpoint_of(path: str) -> str:
    """Seastar's mountpoint_of: walk up from the canonical path while the device id stays the same."""
    cand = os.path.realpath(path)
    dev = os.stat(cand).st_dev
    cur = cand
    while True:
        parent = os.path.dirname(cur)
        if parent == cur:
            return cur
        try:
            if os.stat(parent).st_dev != dev:
                return cur
        except OSError:
            return cur
        cur = parent


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().strip()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    s = _read(path)
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def _scheduler(text: str | None) -> str | None:
    """The active scheduler in "none [mq-deadline] kyber" → "mq-deadline"."""
    if text is None:
        return None
    if "[" in text and "]" in text:
        return text[text.index("[") + 1:text.index("]")]
    return text.strip() or None


def _leaf(sysfs: str) -> LeafDevice:
    q = os.path.join(sysfs, "queue")
    phys = _read_int(f"{q}/physical_block_size") or MIN_TRANSFER
    logical = _read_int(f"{q}/logical_block_size") or MIN_TRANSFER
    rot = _read_int(f"{q}/rotational")
    return LeafDevice(
        name=os.path.basename(sysfs), sysfs=sysfs,
        nr_requests=_read_int(f"{q}/nr_requests") or None,
        queue_depth=_read_int(f"{sysfs}/device/queue_depth") or None,
        minimum_io_size=_read_int(f"{q}/minimum_io_size") or phys,
        physical_block_size=phys, logical_block_size=logical,
        scheduler=_scheduler(_read(f"{q}/scheduler")), nomerges=_read_int(f"{q}/nomerges"),
        write_cache=_read(f"{q}/write_cache"), rotational=None if rot is None else bool(rot),
        max_segments=_read_int(f"{q}/max_segments"),
    )


def _collect(sysfs: str, out: list[LeafDevice], seen: set[str]) -> None:
    sysfs = os.path.realpath(sysfs)
    if sysfs in seen:
        return
    seen.add(sysfs)
    slaves = os.path.join(sysfs, "slaves")
    try:
        under = sorted(os.listdir(slaves))
    except OSError:
        under = []
    if under:  # md / dm / LVM: tune the disks below
        for name in under:
            _collect(os.path.join(slaves, name), out, seen)
        return
    if os.path.exists(os.path.join(sysfs, "partition")):
        sysfs = os.path.dirname(sysfs)  # a partition's queue is its disk's
        if sysfs in seen:
            return
        seen.add(sysfs)
    out.append(_leaf(sysfs))


def scan_device(st_dev: int) -> DeviceInfo:
    """The device stack under ``st_dev`` and the figures iotune takes from it."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    dev = f"{major}:{minor}"
    base = f"/sys/dev/block/{dev}"
    leaves: list[LeafDevice] = []
    notes: list[str] = []
    if os.path.exists(base):
        _collect(base, leaves, set())
    else:
        notes.append(f"no {base} (a filesystem without a block device under it?): queue depth guessed as "
                     f"{GUESSED_IODEPTH}, buffer size 4096")
    if not leaves:
        return DeviceInfo(dev, (), GUESSED_IODEPTH, 4096, None, tuple(notes))
    depth = sum(leaf.depth for leaf in leaves)
    min_io = max(MIN_TRANSFER, *(max(leaf.minimum_io_size, leaf.physical_block_size) for leaf in leaves))
    phys = max(leaf.physical_block_size for leaf in leaves)
    for leaf in leaves:
        if not leaf.nr_requests and not leaf.queue_depth:
            notes.append(f"{leaf.name}: {leaf.depth_source}")
    return DeviceInfo(dev, tuple(leaves), depth, min_io, phys, tuple(notes))
