"""End-to-end: one short row of the ioengine-vs-fio comparison (what `make demo` runs)."""
import io
import os
import shutil
from pathlib import Path

import pytest

from ioengine import ReactorOptions
from ioengine.bench.__main__ import compare, main
from ioengine.bench.workloads import Pattern

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")


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


def test_cli_rejects_unknown_backend(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--reactor-backend", "nope"])
    assert "invalid choice" in capsys.readouterr().err
