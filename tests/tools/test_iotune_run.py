"""iotune on the real disk: short runs in a fresh directory under .scratch, errors, interruption."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioengine.tools import iotune
from ioengine.tools.iotune_device import mount_info, mountpoint_of
from iosched import load_io_properties

pytestmark = [pytest.mark.slow, pytest.mark.real_disk]  # whole iotune runs on the scratch disk

REPO = Path(__file__).resolve().parents[2]
# at most two shards (the default is one per CPU: a large CI machine would start many per phase)
SMP = ["--smp", str(min(2, len(os.sched_getaffinity(0))))]
SHORT = ["--duration", "2", "--no-progress", *SMP]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = iotune.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_short_run(scratch, capsys):
    d = scratch / "eval"
    d.mkdir()
    props, opts = scratch / "io_properties.yaml", scratch / "io.conf"
    rc, out, err = run(capsys, "--evaluation-directory", str(d), "--properties-file", str(props),
                       "--options-file", str(opts), "--format", "envfile", *SHORT)
    assert rc == 0, err
    [disk] = load_io_properties(props)
    assert disk.mountpoints == (mountpoint_of(str(d)),)
    assert disk.read_iops > 100 and disk.write_iops > 100
    assert disk.read_bandwidth > 1e6 and disk.write_bandwidth > 1e6
    assert disk.read_iops < 1e8 and disk.read_bandwidth < 1e12  # plausible, not garbage
    # --cost-sizes (default 128k): IOPS at 4k (random), 128k and 1M (sequential), per direction
    for table in (disk.read_iops_by_size, disk.write_iops_by_size):
        assert table is not None and [n for n, _ in table] == [4096, 128 << 10, 1 << 20]
        assert all(iops > 0 for _, iops in table)
    assert opts.read_text() == f'SEASTAR_IO="--io-properties-file={props}"\n'
    for phrase in ("passed sanity checks", "sequential write bandwidth", "sequential read bandwidth",
                   "random write IOPS", "random read IOPS", "loop CPU"):
        assert phrase in out
    assert list(d.iterdir()) == []  # the test file is gone


def test_smp_runs_the_random_phases_on_every_shard(scratch, capsys):
    d = scratch / "eval"
    d.mkdir()
    props = scratch / "io_properties.yaml"
    rc, out, err = run(capsys, "--evaluation-directory", str(d), "--properties-file", str(props), "--smp", "2",
                       "--force-io-depth", "8", "--duration", "2", "--no-progress")
    assert rc == 0, err
    [disk] = load_io_properties(props)
    assert disk.read_iops > 100 and disk.write_iops > 100
    assert disk.read_bandwidth > 1e6 and disk.write_bandwidth > 1e6
    assert "4 KiB, depth 8" in out  # the total depth, split 4 + 4 over the shards
    assert list(d.iterdir()) == []


def test_extras(scratch, capsys):
    """--repeat, --saturation, --detect-physical-block-size and a one-row latency map, all short."""
    d = scratch / "eval"
    d.mkdir()
    props = scratch / "p.yaml"
    rc, out, err = run(capsys, "--evaluation-directory", str(d), "--properties-file", str(props), "--duration", "1.6",
                       "--no-progress", *SMP, "--repeat", "2", "--saturation", "both", "--detect-physical-block-size",
                       "--latency-map", str(scratch / "map"), "--latency-map-grid", "10,20:0,10",
                       "--latency-map-seconds", "0.4")
    assert rc == 0, err
    [disk] = load_io_properties(props)
    bs = 1 << 20
    assert disk.read_saturation_length and disk.write_saturation_length
    assert disk.read_saturation_length <= bs and disk.write_saturation_length <= bs
    assert disk.physical_block_size and disk.physical_block_size % 512 == 0
    assert "Coefficient of variation over 2 runs" in out and "CoV" in out
    csv = (scratch / "map.csv").read_text().splitlines()
    assert csv[0].startswith("read_pct,write_pct,") and len(csv) == 5
    assert (scratch / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(d.iterdir()) == []


@pytest.mark.fio
def test_compare_fio(scratch, capsys):
    d = scratch / "eval"
    d.mkdir()
    rc, out, err = run(capsys, "--evaluation-directory", str(d), "--compare-fio", *SHORT)
    assert rc == 0, err
    assert out.count("  fio: ") == 4 and out.count("ioengine/fio") == 4
    assert "ratio" in out
    assert "disks:" in out  # no --properties-file: the YAML is printed
    assert list(d.iterdir()) == []


def test_fs_check(scratch, capsys):
    rc, out, err = run(capsys, "--evaluation-directory", str(scratch), "--fs-check")
    assert rc == 0, err
    assert "passed sanity checks" in out and "Measuring" not in out
    assert list(scratch.iterdir()) == []


def test_missing_directory(scratch, capsys):
    d = scratch / "nope"
    rc, out, err = run(capsys, "--evaluation-directory", str(d), *SHORT)
    assert rc == 1
    assert f"iotune: error: evaluation directory '{d}' does not exist" in err


def test_not_a_directory(scratch, capsys):
    f = scratch / "file"
    f.write_text("x")
    rc, out, err = run(capsys, "--evaluation-directory", str(f), *SHORT)
    assert rc == 1 and f"'{f}' is not a directory" in err


def test_tmpfs_refused(capsys):
    mi = mount_info("/dev/shm") if os.path.isdir("/dev/shm") else None
    if mi is None or mi.fstype != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs on this machine")
    rc, out, err = run(capsys, "--evaluation-directory", "/dev/shm", *SHORT)
    assert rc == 1
    assert "evaluation directory '/dev/shm' is on tmpfs" in err and "no disk" in err


@pytest.fixture
def read_only_dir(scratch):
    """A directory writes fail in: a read-only bind mount as root, else a mode-0555 directory."""
    src, ro = scratch / "src", scratch / "ro"
    src.mkdir()
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        yield ro, "not writable"
        ro.chmod(0o755)
        return
    # root ignores permissions: only a read-only mount stops it
    try:
        subprocess.run(["mount", "--bind", str(src), str(ro)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"running as root and cannot bind-mount ({e}); mode 0555 would not stop root")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True, capture_output=True)
        yield ro, "read-only filesystem"
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot remount the bind mount read-only ({e})")
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_read_only_directory(read_only_dir, capsys):
    d, problem = read_only_dir
    rc, out, err = run(capsys, "--evaluation-directory", str(d), *SHORT)
    assert rc == 1
    assert f"evaluation directory '{d}'" in err and problem in err


def _start(d: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ioengine.tools.iotune", "--evaluation-directory", str(d),
                             "--duration", "20", "--no-progress", *SMP, *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_test_file(proc: subprocess.Popen, d: Path, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(p.name.endswith(".tmp") for p in d.iterdir()):
            return
        if proc.poll() is not None:
            pytest.fail(f"iotune ended early ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the test file never appeared")


@pytest.mark.parametrize("sig, delay, code, word", [
    (signal.SIGINT, 0.05, 130, "interrupted"),  # during the layout
    (signal.SIGTERM, 1.5, 143, "terminated"),  # during the sequential write phase
])
def test_interrupted_run_removes_the_test_file(scratch, sig, delay, code, word):
    d = scratch / "eval"
    d.mkdir()
    proc = _start(d)
    try:
        _wait_for_test_file(proc, d)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert f"iotune: {word}; the test file was removed" in err
    assert list(d.iterdir()) == []


def test_stale_test_file_removed(scratch, capsys):
    # a pid that cannot be running: above the kernel's pid_max
    stale = scratch / "iotune-4194305.tmp"
    stale.write_bytes(b"x")
    rc, out, err = run(capsys, "--evaluation-directory", str(scratch), "--fs-check")
    assert rc == 0 and not stale.exists()
    assert "left by an iotune that was killed" in err


def test_one_evaluation_per_mount_point(scratch, capsys):
    a, b = scratch / "a", scratch / "b"
    a.mkdir()
    b.mkdir()
    rc, out, err = run(capsys, "--evaluation-directory", str(a), "--evaluation-directory", str(b), "--fs-check")
    assert rc == 0, err
    assert f"{b} is on {mountpoint_of(str(b))}, already evaluated in {a}" in out
