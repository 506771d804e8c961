"""scripts/fio_examples.py: how fio's examples are classified and counted (no fio needed)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fio_examples.py"


def load() -> Any:
    spec = importlib.util.spec_from_file_location("fio_examples", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fio_examples"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_engines_from_the_file_or_its_readme() -> None:
    fe = load()
    assert fe.engines_of("[j]\nioengine=libaio\n[k]\nioengine=sync\n") == "libaio,sync"
    # No ioengine= line: the README's command line names the engine (xnvme-*), not psync.
    readme = "; fio examples/x.fio \\\n;   --ioengine=xnvme \\\n;   --filename=/dev/ng0n1\n[global]\nbs=4k\n"
    assert fe.engines_of(readme) == "xnvme"
    assert not fe.Result("x.fio", fe.engines_of(readme), "refused", "").honourable
    assert fe.Result("y.fio", "", "ran", "").honourable


def test_shrink_keeps_the_shape_and_sizes_new_files(tmp_path: Path) -> None:
    fe = load()
    text = "[global]\nfilename=/dev/nvme0n1\nio_size=120g\noffset_increment=124g\nruntime=900\n[w]\nnumjobs=30\n"
    out = fe.shrink(text, tmp_path, runtime=2)
    assert f"filename={tmp_path}/dev_nvme0n1" in out
    assert "size=16m" in out  # io_size does not size the (new) file
    assert "io_size=16m" in out and "offset_increment=1m" in out and "numjobs=4" in out
    assert "runtime=2" in out and "runtime=900" not in out


def test_table_counts_runs_apart_from_failures() -> None:
    fe = load()
    rows = [fe.Result("a.fio", "libaio", "ran", "", "ran"),
            fe.Result("b.fio", "", "ran", "", "ran"),
            fe.Result("c.fio", "libaio", "ran-with-error", "err=25 (x)", "err=25"),
            fe.Result("d.fio", "libaio", "refused", "cmdprio", "ran"),
            fe.Result("e.fio", "null", "refused", "ioengine=null")]
    md = fe.table(rows, "X", True)
    assert "4 use an engine ioengine can honour" in md and "**3 of them run** (75 %)" in md
    assert "**2 as written** (50 %), 1 as written but a job fails (c.fio: fio err=25)." in md
    assert "fio 3.33 refuses or fails 0 on this machine too" in md
    assert "| d.fio | libaio | refused | cmdprio | ran |" in md
