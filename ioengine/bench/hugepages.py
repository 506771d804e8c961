"""fio's buffer memory, decided like ioengine's own: huge pages where ioengine's pool has them.

ioengine's pool cuts blocks of :data:`~ioengine.buffers.ARENA_BLOCK_MIN` and up from 2 MiB arenas
advised as transparent huge pages: physically contiguous, so a 128 KiB or 1 MiB request reaches
the disk as one segment. fio's default ``iomem=malloc`` buffers are scattered 4 KiB pages; on a
disk with few segments per request (virtio here: ``max_segments`` 254) its large requests are split,
and a comparison then measures page layouts, not engines. fio gets huge pages only through
hugetlbfs (``--iomem=shmhuge``), which needs pages reserved in ``/proc/sys/vm/nr_hugepages``:
:class:`HugePageReservation` reserves them for the runs and gives them back after.

Measure the difference with ``fio --name=w --filename=.scratch/f --size=256M --direct=1 --rw=write
--bs=1M --iodepth=4 --ioengine=io_uring --runtime=5 --time_based --iomem=malloc`` against the same
with ``--iomem=shmhuge`` (after ``echo 16 > /proc/sys/vm/nr_hugepages``).
"""
from __future__ import annotations

import ctypes
import math
import os
from types import TracebackType

from ..buffers import ARENA_BLOCK_MIN, HUGE_PAGE
from ..options import ReactorOptions

__all__ = ["AUTO", "FIO_IOMEM_KINDS", "HUGE_IOMEM", "NR_HUGEPAGES", "THP_ENABLED", "HugePageError",
           "HugePageReservation", "engine_has_huge_pages", "fio_iomem_for", "hugetlb_pages_for",
           "thp_mode"]

#: Where the kernel says whether transparent huge pages are granted ("always", "madvise", "never").
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
#: The count of reserved hugetlb pages (what fio's shmhuge/mmaphuge memory comes from).
NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"
#: "Decide like ioengine" (the default of ``--fio-iomem``).
AUTO = "auto"
#: fio's iomem kinds that take their memory from hugetlb pages.
HUGE_IOMEM = ("shmhuge", "mmaphuge")
#: What ``--fio-iomem`` accepts besides AUTO: fio's own ``iomem`` kinds (``man fio``).
FIO_IOMEM_KINDS = ("malloc", "shm", "shmhuge", "mmap", "mmaphuge", "mmapshared", "cudamalloc")


class HugePageError(OSError):
    """Huge pages could not be made available for fio (not root, or the kernel refused)."""


def thp_mode(path: str = THP_ENABLED) -> str:
    """The kernel's transparent-huge-page mode: the bracketed word of ``path`` ("always",
    "madvise" or "never"); "never" when the file is missing (a kernel without THP)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return "never"
    start, end = text.find("["), text.find("]")
    return text[start + 1:end].strip() if 0 <= start < end else "never"


def engine_has_huge_pages(bs: int, thp: str | None = None, options: ReactorOptions | None = None) -> bool:
    """Whether ioengine serves a ``bs``-byte buffer from huge pages, under reactor ``options``
    (None: the defaults). The pool cuts blocks of ARENA_BLOCK_MIN and up from 2 MiB arenas, and
    an unpooled buffer of HUGE_PAGE and up is its own arena (native/dmabuf.c); both are advised
    MADV_HUGEPAGE, which the kernel honours unless THP is "never" (``thp``: the mode; None reads
    it from the system)."""
    mode = thp_mode() if thp is None else thp
    if mode == "never":
        return False
    opts = options or ReactorOptions()
    pooled = opts.buffer_pool_depth > 0 and bs <= opts.buffer_pool_max_size
    return bs >= HUGE_PAGE or (pooled and bs >= ARENA_BLOCK_MIN)


def fio_iomem_for(bs: int, thp: str | None = None, options: ReactorOptions | None = None,
                  kind: str = "shmhuge") -> str:
    """fio's ``--iomem`` for requests of ``bs`` bytes, like ioengine's: ``kind`` (a hugetlb kind)
    where ioengine's buffers are on huge pages, else "malloc"."""
    return kind if engine_has_huge_pages(bs, thp, options) else "malloc"


def hugetlb_pages_for(bs: int, iodepth: int, jobs: int = 1, page: int = HUGE_PAGE) -> int:
    """hugetlb pages one fio run takes with huge-page iomem: each job (a process) allocates its
    own bs × iodepth in whole pages, and asks two more than that divides into (fio pads the buffer
    for alignment and rounds up: fio-3.33 refused 1 MiB × 4 with 3 free pages and ran with 4; 128 KiB
    × 5 needed 2 — ``fio --iomem=shmhuge`` with ``nr_hugepages`` stepped up shows it)."""
    if bs <= 0 or iodepth <= 0 or jobs <= 0:
        raise ValueError(f"bs, iodepth and jobs must be positive, got {bs}, {iodepth}, {jobs}")
    return jobs * (math.ceil(bs * iodepth / page) + 2)


SHM_TABLE = "/proc/sysvipc/shm"


def shm_segments(table: str = SHM_TABLE) -> dict[int, tuple[int, int]]:
    """The System V shared memory segments: shmid -> (creator's pid, attachments)."""
    out: dict[int, tuple[int, int]] = {}
    try:
        with open(table) as f:
            next(f, None)
            for line in f:
                cols = line.split()
                if len(cols) >= 7:
                    out[int(cols[1])] = (int(cols[4]), int(cols[6]))
    except (OSError, ValueError):
        pass
    return out


def remove_orphan_segments(before: dict[int, tuple[int, int]], table: str = SHM_TABLE) -> list[int]:
    """Remove the segments made since ``before`` that nobody holds and whose creator is gone: a
    fio that crashed or was killed leaves its shmhuge buffers so, holding hugetlb pages until
    reboot (fio removes them itself when it exits normally). The shmids removed."""
    gone = []
    for shmid, (cpid, nattch) in shm_segments(table).items():
        if shmid in before or nattch or os.path.exists(f"/proc/{cpid}"):
            continue
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.shmctl(shmid, 0, None) == 0:  # IPC_RMID
            gone.append(shmid)
    return gone


class HugePageReservation:
    """``with HugePageReservation(n):`` at least ``n`` hugetlb pages free for fio, the previous
    ``nr_hugepages`` restored on leaving however it is left (an error, KeyboardInterrupt).

    Never raises for want of pages: :attr:`ok` says whether they are there and :attr:`reason` why
    not (not root, or the kernel gave fewer: memory too fragmented), so the caller lets fio keep
    malloc and reports it. :attr:`message` says what was reserved, for the caller to print: no
    silent system change. ``path``: the sysctl file (tests pass a temporary one); ``free_path``:
    where the free count is read (default: ``/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages``
    next to ``path``'s default, else nr_hugepages itself).
    """

    def __init__(self, pages: int, path: str = NR_HUGEPAGES, free_path: str | None = None) -> None:
        if pages < 0:
            raise ValueError(f"hugetlb pages to reserve must be >= 0, got {pages}")
        self.pages = pages
        self.path = path
        self.free_path = free_path if free_path is not None else (
            f"/sys/kernel/mm/hugepages/hugepages-{HUGE_PAGE >> 10}kB/free_hugepages" if path == NR_HUGEPAGES
            else None)
        self.previous: int | None = None
        #: The System V shared memory segments there were at __enter__ (fio's shmhuge memory is one).
        self._segments: dict[int, tuple[int, int]] | None = None
        self.ok = pages == 0
        self.reason = ""
        self.message = ""

    def _read(self, path: str) -> int:
        with open(path) as f:
            return int(f.read().split()[0])

    def _free(self, total: int) -> int:
        """Pages fio can still have: free, less those already promised to a shared memory
        segment (``resv_hugepages`` next to the free count; e.g. one a killed fio left behind),
        which the kernel counts as free until they are touched."""
        if self.free_path is None:
            return total
        try:
            free = self._read(self.free_path)
        except (OSError, ValueError):
            return total
        return max(0, free - self._sibling("resv_hugepages"))

    def _sibling(self, name: str) -> int:
        """A count next to the free one (``resv_hugepages``, ``surplus_hugepages``); 0 if none."""
        if self.free_path is None:
            return 0
        try:
            return self._read(os.path.join(os.path.dirname(self.free_path), name))
        except (OSError, ValueError):
            return 0

    def _write(self, value: int) -> None:
        with open(self.path, "w") as f:
            f.write(f"{value}\n")

    def __enter__(self) -> HugePageReservation:
        if self.pages == 0:
            return self
        try:
            before = self._read(self.path)
        except (OSError, ValueError) as e:
            self.reason = f"cannot read {self.path}: {e}"
            return self
        free = self._free(before)
        if free >= self.pages:
            self.ok = True
            self.message = f"{free} hugetlb page(s) already free ({self.path} = {before}); none reserved"
            return self
        if self.path == NR_HUGEPAGES:
            self._segments = shm_segments()
        # Surplus pages (in use beyond nr_hugepages, e.g. by a segment a killed fio left) become
        # the pool's first when it is raised: they are not new free pages.
        want = before + self._sibling("surplus_hugepages") + self.pages - free
        try:
            self._write(want)
        except OSError as e:
            self.reason = (f"cannot raise {self.path} from {before} to {want}: {e.strerror or e}"
                           + ("" if os.geteuid() == 0 else " (not root)"))
            return self
        self.previous = before  # from here on, __exit__ puts it back
        try:
            got = self._read(self.path)
        except (OSError, ValueError):
            got = want
        self.message = f"reserved hugetlb pages for fio: {self.path} {before} -> {got} (restored after the runs)"
        if got < want:
            self.reason = (f"the kernel gave {got - before} of the {want - before} hugetlb page(s) asked "
                           f"(memory too fragmented?)")
            return self
        self.ok = True
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._segments is not None:
            remove_orphan_segments(self._segments)
            self._segments = None
        self.restore()

    def restore(self) -> None:
        """Put ``nr_hugepages`` back as it was (idempotent); an error to do so is raised as
        :class:`HugePageError` naming the value to restore by hand."""
        if self.previous is None:
            return
        previous, self.previous = self.previous, None
        try:
            self._write(previous)
        except OSError as e:
            raise HugePageError(e.errno, f"could not restore {self.path} to {previous} ({e.strerror}); "
                                         f"restore it by hand: echo {previous} > {self.path}") from e
