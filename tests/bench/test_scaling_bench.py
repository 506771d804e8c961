"""ioengine-bench scaling: one shard against N at the same total depth, next to fio (smoke: short runs)."""
from __future__ import annotations

import io

import pytest

from ioengine.bench.__main__ import main
from ioengine.bench.scaling import main_scaling

pytestmark = [pytest.mark.fio, pytest.mark.real_disk, pytest.mark.slow]  # ioengine and fio on the scratch disk


def test_scaling_smoke(scratch):
    out = io.StringIO()
    res = main_scaling(str(scratch / "scale.dat"), 16 << 20, 0.3, 1, 8, 2, ["randread"], out=out)
    text = out.getvalue()
    assert "ioengine, 2 shards" in text and "fio, 2 jobs" in text and "scaling (2 / 1)" in text
    cells = res["randread"]
    assert set(cells) == {"ioengine 1", "fio 1", "ioengine 2", "fio 2"}
    assert all(c["iops"] > 0 for c in cells.values())


@pytest.mark.parametrize("argv, needle", [
    (["--smp", "1"], "at least 2"),
    (["--depth", "5"], "does not split evenly"),
    (["--rows", "randrw"], "unknown row"),
])
def test_scaling_refuses_bad_arguments(capsys, scratch, argv, needle):
    assert main(["scaling", "--file", str(scratch / "x.dat"), "--size", "4M", *argv]) == 2
    assert needle in capsys.readouterr().err
