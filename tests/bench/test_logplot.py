"""ioengine-bench plot: fio-format logs (ours, from `ioengine-bench run`, and fio's own) to a PNG."""
from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from ioengine.bench.__main__ import main
from ioengine.bench.logplot import LogError, averaged, read_log

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_of_our_own_logs(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = scratch / "job.fio"
    job.write_text(textwrap.dedent(f"""\
        [rw]
        filename={scratch}/data
        size=2M
        rw=randrw
        bs=4k
        direct=1
        ioengine=io_uring
        iodepth=4
        runtime=300ms
        time_based
        write_bw_log={scratch}/rw
        write_lat_log={scratch}/rw
        write_iops_log={scratch}/rw
        """))
    assert main(["run", str(job)]) == 0
    logs = sorted(str(p) for p in scratch.glob("rw_*.log"))
    assert {Path(p).name for p in logs} == {"rw_bw.1.log", "rw_lat.1.log", "rw_clat.1.log", "rw_slat.1.log",
                                            "rw_iops.1.log"}
    s = read_log(str(scratch / "rw_iops.1.log"))
    assert set(s.samples) == {0, 1} and s.kind == "iops"
    out = scratch / "logs.png"
    capsys.readouterr()
    assert main(["plot", *logs, "--out", str(out), "--avg-ms", "50"]) == 0
    assert out.read_bytes()[:8] == PNG and f"wrote {out}" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_plot_of_fios_logs(scratch: Path) -> None:
    subprocess.run(["fio", "--name=f", f"--filename={scratch}/d", "--size=2M", "--rw=randread", "--bs=4k",
                    "--direct=1", "--runtime=200ms", "--time_based", f"--write_bw_log={scratch}/f",
                    f"--write_lat_log={scratch}/f", "--output=/dev/null"], check=True, timeout=60)
    logs = sorted(str(p) for p in scratch.glob("f_*.log"))
    assert logs
    out = scratch / "fio.png"
    assert main(["plot", *logs, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG


def test_bad_logs_are_refused_naming_file_and_line(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = scratch / "x_bw.1.log"
    bad.write_text("0, 10, 0, 4096, 0\n5, oops, 0, 4096, 0\n")
    with pytest.raises(LogError, match=r"x_bw\.1\.log:2: expected 'time, value, direction"):
        read_log(str(bad))
    assert main(["plot", str(bad), "--out", str(scratch / "o.png")]) == 2
    assert "x_bw.1.log:2" in capsys.readouterr().err
    with pytest.raises(LogError, match="not a fio log name"):
        read_log(str(scratch / "notes.txt"))
    with pytest.raises(LogError, match="cannot read it"):
        read_log(str(scratch / "missing_lat.1.log"))
    empty = scratch / "e_iops.1.log"
    empty.write_text("\n")
    assert read_log(str(empty)).samples == {}  # plotted around (fio writes empty slat logs)
    assert main(["plot", str(empty), "--out", str(scratch / "o.png")]) == 2
    assert "no samples in" in capsys.readouterr().err
    assert not (scratch / "o.png").exists()


def test_averaging_turns_per_io_samples_into_rates_and_means() -> None:
    per_io = [(t, 1, 4096) for t in range(0, 1001, 2)]  # one 4 KiB I/O every 2 ms: 500 IOPS, 2000 KiB/s
    xs, ys = averaged(per_io, "iops", 100)
    assert len(xs) == 10 and all(y == pytest.approx(500) for y in ys)  # the open window at 1.0 s left out
    xs, ys = averaged([(t, 9999, 4096) for t, _, _ in per_io], "bw", 100)  # per-I/O bandwidth: the sum counts
    assert all(y == pytest.approx(2000) for y in ys)
    xs, ys = averaged([(100, 1500, 0), (200, 1700, 0)], "bw", 100)  # log_avg_msec samples: means
    assert ys == [1500, 1700]
    xs, ys = averaged([(10, 100, 4096), (20, 300, 4096), (150, 50, 4096)], "lat", 100)
    assert xs == [0.1, 0.2] and ys == [200, 50]
    xs, ys = averaged([(10, 7, 4096)], "bw", 0)  # raw
    assert xs == [0.01] and ys == [7.0]
