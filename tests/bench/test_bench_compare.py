"""ioengine-bench compare: the matrix end to end (with fio), its CLI errors, the renderers, caio."""
from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from ioengine import ReactorOptions
from ioengine.bench import report
from ioengine.bench.__main__ import main
from ioengine.bench.compare import (QUICK_ROWS, QUICK_SECONDS, ROWS, Matrix, RowResult, Sample, machine_meta,
                                    run_matrix, select_rows)
from ioengine.bench.workloads import CaioUnavailable, Pattern, caio_module, ensure_bench_file, run_caio_pattern

needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (apt install fio)")


# ------------------------------------------------------------------------------- end to end


@needs_fio
def test_compare_one_row_end_to_end(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = {k: scratch / f"r.{k}" for k in ("json", "md", "png")}
    rc = main(["compare", "--rows", "randread-qd32", "--seconds", "1", "--rounds", "1", "--size", "16M",
               "--file", str(scratch / "bench.dat"), "--json", str(out["json"]), "--markdown", str(out["md"]),
               "--chart", str(out["png"])])
    text = capsys.readouterr().out
    assert rc == 0
    assert "4k randread QD32" in text and "randread-qd32 round 1/1" in text
    doc = json.loads(out["json"].read_text())
    assert doc["meta"]["rounds"] == 1 and doc["meta"]["seconds"] == 1 and doc["meta"]["size"] == 16 << 20
    (row,) = doc["rows"]
    assert row["name"] == "randread-qd32" and row["pattern"]["iodepth"] == 32
    for side in ("ioengine", "fio"):
        m = row["median"][side]
        assert m["iops"] > 100 and m["cpu_us_per_io"] > 0
        assert m["mb_per_s"] == pytest.approx(m["iops"] * 4096 / 1e6, rel=1e-6)
        assert 0 < m["p50_us"] <= m["p99_us"] <= m["p999_us"] < 1e6
        assert len(row["rounds"][side]) == 1
    r = row["ratio_to_fio"]["ioengine"]
    assert r["iops"] == pytest.approx(row["median"]["ioengine"]["iops"] / row["median"]["fio"]["iops"])
    assert r["cpu_us_per_io"] > 0 and r["p50_us"] > 0
    md = out["md"].read_text()
    assert md.startswith("| row | IOPS ioengine | IOPS fio |") and "| 4k randread QD32 |" in md
    png = out["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


# ------------------------------------------------------------------------------- CLI errors


def test_smp_other_than_1_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--smp", "2"]) == 2
    err = capsys.readouterr().err
    assert "--smp 2" in err and "per-core shards are not implemented yet" in err


def test_missing_fio_is_reported_before_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["compare", "--rows", "randread-qd1", "--file", str(tmp_path / "never.dat")]) == 2
    assert "fio is not installed" in capsys.readouterr().err
    assert not (tmp_path / "never.dat").exists()


def test_unknown_row_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--rows", "randread-qd1,bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown row(s) bogus" in err and "randread-qd32" in err


def test_cli_rejects_bad_numbers() -> None:
    for argv in (["compare", "--seconds", "0"], ["compare", "--rounds", "0"], ["compare", "--size", "1.5m"]):
        with pytest.raises(SystemExit):
            main(argv)


def test_rows_and_quick_preset() -> None:
    assert [r.name for r in select_rows(None)] == list(ROWS)
    assert list(ROWS) == ["randread-qd1", "randread-qd32", "randwrite-qd32", "randrw-qd32", "read-dma",
                          "read-stream", "write-dma", "write-stream"]
    assert [r.name for r in select_rows("read-stream, randread-qd1,read-stream")] == ["read-stream", "randread-qd1"]
    # The stream rows give fio the same number of I/Os in flight.
    assert ROWS["read-stream"].pattern.fio_args()[-1] == "--iodepth=5"
    assert ROWS["write-stream"].pattern.fio_args()[-1] == "--iodepth=4"
    assert ROWS["randrw-qd32"].pattern.fio_args()[-1] == "--rwmixread=70"
    # `make demo` budget: sides x rounds x seconds, plus ~0.2 s of start-up per run, under ~40 s.
    runs = len(QUICK_ROWS) * 3 * 2
    assert runs * (QUICK_SECONDS + 0.2) <= 40


# ------------------------------------------------------------------------------- renderers


def _matrix(caio: bool = False) -> Matrix:
    rows = []
    for name, iops in (("randread-qd32", 50_000.0), ("read-stream", 6_000.0)):
        row = ROWS[name]
        bs = row.pattern.bs
        rr = RowResult(row, {
            "ioengine": [Sample(iops * f, iops * f * bs / 1e6, 11.0, 500.0, 900.0, 4000.0) for f in (0.8, 0.9, 1.0)],
            "fio": [Sample(iops, iops * bs / 1e6, 6.0, 400.0, 800.0, 3000.0)] * 3,
        })
        if caio:
            if row.caio_eligible:
                rr.samples["caio"] = [Sample(iops * 2, iops * 2 * bs / 1e6, 20.0)] * 3
            else:
                rr.skipped["caio"] = "caio covers only the random file-API rows"
        rows.append(rr)
    return Matrix(rows, machine_meta("/x/bench.dat", 64 << 20, 1.0, 3, ReactorOptions()))


def test_renderers(tmp_path: Path) -> None:
    m = _matrix()
    rr = m.rows[0]
    assert rr.median("ioengine").iops == pytest.approx(45_000)  # the median round, not the mean
    assert rr.ratios()["iops"] == pytest.approx(0.9)
    assert rr.ratios()["cpu_us_per_io"] == pytest.approx(11 / 6)
    assert rr.ratios()["p50_us"] == pytest.approx(1.25)
    import io

    plain = io.StringIO()
    report.print_table(m, plain, use_rich=False)
    text = plain.getvalue()
    assert "4k randread QD32" in text and "ioengine/fio" in text and "0.90x" in text and "1.83x" in text
    assert "4 000" in text and "1.25x" in text
    fancy = io.StringIO()
    report.print_table(m, fancy)
    assert "0.90x" in fancy.getvalue()
    md = report.markdown(m)
    assert "| 0.90× |" in md and "µs" in md and "read_ahead 4" in md
    report.write_json(m, str(tmp_path / "m.json"))
    doc = json.loads((tmp_path / "m.json").read_text())  # strict JSON: no NaN anywhere
    assert doc["rows"][1]["median"]["fio"]["p50_us"] == 400.0
    report.write_chart(m, str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_figures_are_dashes_and_nulls(tmp_path: Path) -> None:
    m = _matrix()
    m.rows[0].samples["fio"] = [Sample(1000.0, 4.1, math.nan)]
    assert math.isnan(m.rows[0].ratios()["cpu_us_per_io"])
    _, cells, _ = report.columns(m, unicode=False)
    assert cells[0][3] == "45.00x" and cells[0][7] == "-" and cells[0][11] == "-"
    report.write_json(m, str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text())["rows"][0]["median"]["fio"]["p50_us"] is None


# ------------------------------------------------------------------------------- caio


def test_caio_missing_is_skipped_with_a_message(monkeypatch: pytest.MonkeyPatch, scratch: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "caio", None)  # `import caio` raises ImportError
    with pytest.raises(CaioUnavailable, match=r"caio is not installed .* the caio column is skipped"):
        caio_module()
    fake = Sample(1000.0, 4.1, 10.0, 50.0, 90.0, 99.0)
    called = []

    def side(name):
        def run(path, size, pattern, seconds):
            called.append(name)
            return fake
        return run

    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 2, ReactorOptions(),
                   caio=True, progress=sys.stdout, sides={"ioengine": side("ioengine"), "fio": side("fio"),
                                                          "caio": side("caio")})
    assert called == ["ioengine", "fio"] * 2  # A B A B, never caio
    assert "caio is not installed" in capsys.readouterr().out
    assert "caio is not installed" in m.rows[0].skipped["caio"]
    headers, cells, notes = report.columns(m, unicode=False)
    assert "IOPS caio" in headers and cells[0][12] == "skipped"
    assert any("caio is not installed" in n for n in notes)


class _FakeCaioContext:
    """caio.AsyncioContext's documented API, done with plain pread/pwrite (tests only)."""

    def __init__(self, max_requests: int = 128) -> None:
        self.max_requests = max_requests
        self.closed = False

    async def read(self, nbytes: int, fd: int, offset: int) -> bytes:
        await asyncio.sleep(0)  # a real completion comes back through the loop
        return os.pread(fd, nbytes, offset)

    async def write(self, payload: bytes, fd: int, offset: int) -> int:
        await asyncio.sleep(0)
        return os.pwrite(fd, payload, offset)

    def close(self) -> None:
        self.closed = True


def test_caio_column_runs_against_its_api(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    monkeypatch.setitem(sys.modules, "caio", types.SimpleNamespace(AsyncioContext=_FakeCaioContext))
    path = str(scratch / "c.dat")
    ensure_bench_file(path, 2 << 20)
    r = run_caio_pattern(path, Pattern("randrw", 4096, 4, rwmixread=70), 0.2)
    assert r.ios > 100 and len(r.latencies_ns) == r.ios and r.cpu_seconds > 0
    with pytest.raises(ValueError, match="random file-API rows"):
        run_caio_pattern(path, Pattern("read", 4096, 4), 0.1)
    fake = Sample(1000.0, 4.1, 10.0, 50.0, 90.0, 99.0)
    m = run_matrix(path, 2 << 20, select_rows("randread-qd1,read-stream"), 0.1, 1, ReactorOptions(), caio=True,
                   progress=None, sides={"ioengine": lambda *a: fake, "fio": lambda *a: fake,
                                         "caio": lambda *a: Sample(2000.0, 8.2, 5.0)})
    assert m.rows[0].ratios("caio")["iops"] == 2.0
    assert "random file-API rows" in m.rows[1].skipped["caio"]
