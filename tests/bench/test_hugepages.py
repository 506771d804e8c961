"""fio's memory decided like ioengine's (ioengine.bench.hugepages), and the hugetlb reservation
restoring the previous value: on a temporary fake sysctl file, never the system's."""
from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from ioengine.bench.hugepages import (
    HugePageError,
    HugePageReservation,
    engine_has_huge_pages,
    fio_iomem_for,
    hugetlb_pages_for,
    remove_orphan_segments,
    shm_segments,
    thp_mode,
)
from ioengine.buffers import ARENA_BLOCK_MIN, HUGE_PAGE
from ioengine.options import ReactorOptions


@pytest.mark.parametrize("mode", ["always", "madvise"])
def test_arena_sizes_get_huge_pages(mode: str) -> None:
    assert engine_has_huge_pages(ARENA_BLOCK_MIN, mode)
    assert engine_has_huge_pages(1 << 20, mode) and fio_iomem_for(128 << 10, mode) == "shmhuge"
    assert not engine_has_huge_pages(ARENA_BLOCK_MIN // 2, mode) and fio_iomem_for(4096, mode) == "malloc"


def test_thp_never_means_malloc() -> None:
    assert not engine_has_huge_pages(1 << 20, "never") and fio_iomem_for(1 << 20, "never") == "malloc"


def test_pool_options_decide() -> None:
    # Not pooled (depth 0, or above the pool's largest): only buffers of a huge page and up are arenas.
    no_pool = ReactorOptions(buffer_pool_depth=0)
    assert not engine_has_huge_pages(128 << 10, "madvise", no_pool)
    assert engine_has_huge_pages(HUGE_PAGE, "madvise", no_pool)
    small = ReactorOptions(buffer_pool_max_size=64 << 10)
    assert not engine_has_huge_pages(1 << 20, "madvise", small)
    assert fio_iomem_for(128 << 10, "madvise", kind="mmaphuge") == "mmaphuge"


def test_thp_mode_reads_the_bracketed_word(tmp_path: Path) -> None:
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert thp_mode(str(f)) == "madvise"
    assert thp_mode(str(tmp_path / "missing")) == "never"


def test_pages_for_a_run() -> None:
    assert hugetlb_pages_for(1 << 20, 4) == 4  # 2 pages of buffers + fio's slack
    assert hugetlb_pages_for(128 << 10, 5) == 3
    assert hugetlb_pages_for(128 << 10, 4, jobs=2) == 2 * hugetlb_pages_for(128 << 10, 4)
    with pytest.raises(ValueError, match="must be positive"):
        hugetlb_pages_for(0, 4)


def _sysctl(tmp_path: Path, value: int) -> Path:
    f = tmp_path / "nr_hugepages"
    f.write_text(f"{value}\n")
    return f


def test_reservation_raises_and_restores(tmp_path: Path) -> None:
    f = _sysctl(tmp_path, 2)
    free = tmp_path / "free"
    free.write_text("1\n")  # one of the two is free: three more make four free
    with HugePageReservation(4, path=str(f), free_path=str(free)) as r:
        assert r.ok and f.read_text().strip() == "5"
        assert "2 -> 5" in r.message and "restored" in r.message
    assert f.read_text().strip() == "2"


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_reservation_restores_on_error(tmp_path: Path, exc: type[BaseException]) -> None:
    f = _sysctl(tmp_path, 0)
    with pytest.raises(exc), HugePageReservation(3, path=str(f)):
        assert f.read_text().strip() == "3"
        raise exc()
    assert f.read_text().strip() == "0"


def test_enough_free_pages_reserve_nothing(tmp_path: Path) -> None:
    f = _sysctl(tmp_path, 8)
    free = tmp_path / "free"
    free.write_text("8\n")
    with HugePageReservation(4, path=str(f), free_path=str(free)) as r:
        assert r.ok and r.previous is None and "none reserved" in r.message
    assert f.read_text().strip() == "8"


def test_pages_promised_to_a_segment_are_not_free(tmp_path: Path) -> None:
    """Free pages a shared memory segment has reserved (one a killed fio left) are not fio's."""
    f = _sysctl(tmp_path, 12)
    (tmp_path / "free").write_text("12\n")
    (tmp_path / "resv_hugepages").write_text("12\n")
    with HugePageReservation(4, path=str(f), free_path=str(tmp_path / "free")) as r:
        assert r.ok and f.read_text().strip() == "16"
    assert f.read_text().strip() == "12"


def test_surplus_pages_are_not_new_pages(tmp_path: Path) -> None:
    """Raising the pool adopts the surplus pages in use first: they count in what to ask for."""
    f = _sysctl(tmp_path, 0)
    (tmp_path / "free").write_text("0\n")
    (tmp_path / "surplus_hugepages").write_text("60\n")
    with HugePageReservation(3, path=str(f), free_path=str(tmp_path / "free")) as r:
        assert r.ok and f.read_text().strip() == "63"
    assert f.read_text().strip() == "0"


def test_a_dead_processs_segment_is_removed_and_others_kept() -> None:
    """What a killed fio leaves (a segment nobody holds, its creator gone) is removed; a segment
    that was there before, or whose creator lives, is not."""
    libc = ctypes.CDLL(None, use_errno=True)
    mine = libc.shmget(0, 4096, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT: this process made it
    assert mine >= 0
    try:
        before = shm_segments()
        script = "import ctypes; print(ctypes.CDLL(None).shmget(0, 4096, 0o1000 | 0o600))"
        orphan = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                    check=True).stdout)
        late = libc.shmget(0, 4096, 0o1000 | 0o600)  # made after, but its creator (us) lives
        try:
            assert orphan in shm_segments() and mine in before
            assert remove_orphan_segments(before) == [orphan]
            now = shm_segments()
            assert orphan not in now and mine in now and late in now
        finally:
            libc.shmctl(late, 0, None)
    finally:
        libc.shmctl(mine, 0, None)


def test_unreadable_sysctl_keeps_malloc(tmp_path: Path) -> None:
    with HugePageReservation(4, path=str(tmp_path / "absent")) as r:
        assert not r.ok and "cannot read" in r.reason


def test_refused_write_is_a_reason(tmp_path: Path) -> None:
    f = _sysctl(tmp_path, 0)
    f.chmod(0o444)
    r = HugePageReservation(4, path=str(f))
    r._write = lambda value: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))  # type: ignore[method-assign]
    with r:
        assert not r.ok and "cannot raise" in r.reason and "Permission denied" in r.reason
    assert f.read_text().strip() == "0"


def test_failed_restore_says_how(tmp_path: Path) -> None:
    f = _sysctl(tmp_path, 1)
    r = HugePageReservation(2, path=str(f))
    r.__enter__()
    r._write = lambda value: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))  # type: ignore[method-assign]
    with pytest.raises(HugePageError, match=r"echo 1 > "):
        r.restore()
