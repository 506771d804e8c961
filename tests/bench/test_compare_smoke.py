"""End-to-end: one short row of the ioengine-vs-fio comparison (what `make demo` runs)."""
import io
import os
import shutil
from pathlib import Path

import pytest

from ioengine import ReactorOptions
from ioengine.bench import report
from ioengine.bench.__main__ import compare, main
from ioengine.bench.compare import run_matrix, select_rows
from ioengine.bench.workloads import Pattern

pytestmark = [pytest.mark.fio, pytest.mark.real_disk, pytest.mark.slow]  # ioengine and fio on the scratch disk


def test_compare_one_row(tmp_path):
    # On the local disk (./.scratch), not /tmp: /tmp may be tmpfs, where fio's direct=1 can fail.
    d = Path(__file__).resolve().parents[2] / ".scratch" / f"compare-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    path = str(d / "bench.dat")
    out = io.StringIO()
    summary = compare(path, 16 << 20, Pattern("randread", 4096, 8), 0.5, 1, ReactorOptions(), False, out=out)
    text = out.getvalue()
    assert "ratio" in text and "round 1" in text
    for key in ("iops", "mb_per_s", "cpu_us_per_io"):
        assert summary[key]["ioengine"] > 0 and summary[key]["fio"] > 0
        assert summary[key]["ratio"] > 0
    shutil.rmtree(d)


def test_compare_one_row_on_both_loops():
    """One real row of the matrix, ioengine on asyncio's loop and on uvloop's, each next to fio."""
    pytest.importorskip("uvloop")
    d = Path(__file__).resolve().parents[2] / ".scratch" / f"compare-loops-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    m = run_matrix(str(d / "bench.dat"), 16 << 20, select_rows("randread-qd32"), 0.5, 1, ReactorOptions(),
                   loops="asyncio,uvloop", progress=out)
    assert "round 1/1: ioengine " in out.getvalue() and "| ioengine-uvloop " in out.getvalue()
    (row,) = m.rows
    assert list(row.samples) == ["ioengine", "ioengine-uvloop", "fio"]
    for side in ("ioengine", "ioengine-uvloop", "fio"):
        s = row.median(side)
        assert s.iops > 100 and s.cpu_us_per_io > 0 and 0 < s.p50_us <= s.p99_us
    for side in ("ioengine", "ioengine-uvloop"):
        assert row.ratios(side)["iops"] > 0
    assert m.meta["loops"] == ["asyncio", "uvloop"] and m.meta["uvloop"]
    table = io.StringIO()
    report.print_table(m, table, use_rich=False)
    assert "ioengine-uvloop/fio" in table.getvalue() and "ioengine/fio" in table.getvalue()
    doc = m.to_json()
    assert set(doc["rows"][0]["ratio_to_fio"]) == {"ioengine", "ioengine-uvloop"}
    shutil.rmtree(d)


def test_cli_rejects_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--reactor-backend", "nope"])
    assert "invalid choice" in capsys.readouterr().err
