"""ioengine-bench compare: the matrix end to end (with fio), its CLI errors, the renderers, caio."""
from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import types
from pathlib import Path

import pytest

from ioengine import ReactorOptions
from ioengine.bench import compare as compare_mod
from ioengine.bench import report
from ioengine.bench.__main__ import main
from ioengine.bench.compare import (
    QUICK_ROWS,
    QUICK_SECONDS,
    ROWS,
    Matrix,
    RowResult,
    Sample,
    machine_meta,
    parse_loops,
    run_matrix,
    select_rows,
)
from ioengine.bench.workloads import (
    CaioUnavailable,
    Pattern,
    UvloopUnavailable,
    caio_module,
    ensure_bench_file,
    run_caio_pattern,
    run_pattern,
    uvloop_module,
)

needs_fio = pytest.mark.fio  # skipped without fio (tests/conftest.py)


def _has_uvloop() -> bool:
    try:
        uvloop_module()
    except UvloopUnavailable:
        return False
    return True


needs_uvloop = pytest.mark.skipif(not _has_uvloop(), reason="uvloop is not installed (pip install uvloop)")


# ------------------------------------------------------------------------------- end to end


@needs_fio
@pytest.mark.slow
@pytest.mark.real_disk
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
    # By default every row runs on both loops when uvloop is installed.
    engines = ["ioengine", "ioengine-uvloop"] if _has_uvloop() else ["ioengine"]
    assert doc["meta"]["loops"] == (["asyncio", "uvloop"] if _has_uvloop() else ["asyncio"])
    assert sorted(row["median"]) == sorted([*engines, "fio"]) and sorted(row["ratio_to_fio"]) == sorted(engines)
    for side in (*engines, "fio"):
        m = row["median"][side]
        assert m["iops"] > 100 and m["cpu_us_per_io"] > 0
        assert m["mb_per_s"] == pytest.approx(m["iops"] * 4096 / 1e6, rel=1e-6)
        assert 0 < m["p50_us"] <= m["p99_us"] <= m["p999_us"] < 1e6
        assert len(row["rounds"][side]) == 1
    # fio's latency is its lat (slat + clat), timed as ioengine's await is; its clat p50 is kept,
    # and cannot exceed lat's (clat starts after the submitting call returns)
    fio = row["median"]["fio"]
    assert 0 < fio["clat_p50_us"] <= fio["p50_us"]
    for side in engines:
        r = row["ratio_to_fio"][side]
        assert r["iops"] == pytest.approx(row["median"][side]["iops"] / row["median"]["fio"]["iops"])
        assert r["cpu_us_per_io"] > 0 and r["p50_us"] > 0
    md = out["md"].read_text()
    uv = "IOPS ioengine·uvloop | " if _has_uvloop() else ""
    assert md.startswith("| row | IOPS ioengine | " + uv + "IOPS fio |")
    assert "| 4k randread QD32 |" in md
    if _has_uvloop():
        assert "randread-qd32 round 1/1: ioengine " in text and "| ioengine-uvloop " in text
        assert "ioengine·uvloop/fio" in text
    png = out["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


# ------------------------------------------------------------------------------- CLI errors


def test_smp_beyond_the_cpus_or_below_1_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    n = len(os.sched_getaffinity(0)) + 1
    assert main(["compare", "--smp", str(n), "--rows", "randread-qd1"]) == 2
    err = capsys.readouterr().err
    assert f"--smp {n}" in err and f"smp={n} needs {n} CPUs" in err
    with pytest.raises(SystemExit):
        main(["compare", "--smp", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_missing_fio_is_reported_before_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["compare", "--rows", "randread-qd1", "--file", str(tmp_path / "never.dat")]) == 2
    assert "fio is not installed" in capsys.readouterr().err
    assert not (tmp_path / "never.dat").exists()


def test_unknown_loop_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--loops", "asyncio,trio"]) == 2
    err = capsys.readouterr().err
    assert "--loops: unknown loop(s) trio" in err and "asyncio, uvloop" in err
    assert main(["compare", "--loops", ","]) == 2
    assert "no loop selected" in capsys.readouterr().err


def test_uvloop_asked_for_but_missing_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert main(["compare", "--loops", "uvloop", "--file", str(tmp_path / "never.dat")]) == 2
    assert "--loops: uvloop is not installed" in capsys.readouterr().err
    assert not (tmp_path / "never.dat").exists()


def test_parse_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_loops("uvloop, asyncio") == (("asyncio", "uvloop"), None)  # always in the same order
    assert parse_loops(["asyncio"]) == (("asyncio",), None)
    with pytest.raises(ValueError, match="unknown loop"):
        parse_loops("asyncio,tokio")
    if _has_uvloop():
        assert parse_loops(None) == (("asyncio", "uvloop"), None)
    monkeypatch.setitem(sys.modules, "uvloop", None)
    loops, note = parse_loops(None)
    assert loops == ("asyncio",) and "uvloop is not installed" in note and "asyncio's default loop only" in note
    with pytest.raises(ValueError, match="uvloop is not installed"):
        parse_loops("asyncio,uvloop")


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
    # `make demo` budget (~1 min with iotune's 12 s): rows x rounds x sides (ioengine on asyncio
    # and on uvloop, fio) x seconds, plus ~0.2 s of start-up per run, under ~45 s.
    runs = len(QUICK_ROWS) * 3 * 3
    assert runs * (QUICK_SECONDS + 0.2) <= 45


# ------------------------------------------------------------------------------- renderers


def _matrix(caio: bool = False, uvloop: bool = False) -> Matrix:
    rows = []
    for name, iops in (("randread-qd32", 50_000.0), ("read-stream", 6_000.0)):
        row = ROWS[name]
        bs = row.pattern.bs
        rr = RowResult(row, {
            "ioengine": [Sample(iops * f, iops * f * bs / 1e6, 11.0, 500.0, 900.0, 4000.0) for f in (0.8, 0.9, 1.0)],
            "fio": [Sample(iops, iops * bs / 1e6, 6.0, 400.0, 800.0, 3000.0)] * 3,
        })
        if uvloop:
            rr.samples["ioengine-uvloop"] = [Sample(iops * f, iops * f * bs / 1e6, 7.5, 450.0, 850.0, 3500.0)
                                             for f in (1.2, 1.1, 1.0)]
        if caio:
            if row.caio_eligible:
                rr.samples["caio"] = [Sample(iops * 2, iops * 2 * bs / 1e6, 20.0)] * 3
            else:
                rr.skipped["caio"] = "caio covers only the random file-API rows"
        rows.append(rr)
    loops = ("asyncio", "uvloop") if uvloop else ("asyncio",)
    return Matrix(rows, machine_meta("/x/bench.dat", 64 << 20, 1.0, 3, ReactorOptions(), loops=loops))


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


def test_renderers_with_both_loops(tmp_path: Path) -> None:
    import io

    m = _matrix(caio=True, uvloop=True)
    rr = m.rows[0]
    assert rr.engine_sides() == ["ioengine", "ioengine-uvloop"]
    assert rr.median("ioengine-uvloop").iops == pytest.approx(55_000)
    assert rr.ratios("ioengine-uvloop")["iops"] == pytest.approx(1.1)
    assert rr.ratios("ioengine-uvloop")["cpu_us_per_io"] == pytest.approx(1.25)
    # Plain table: one line per side, a ratio line for each loop (ASCII names).
    plain = io.StringIO()
    report.print_table(m, plain, use_rich=False)
    lines = plain.getvalue().splitlines()
    _, blocks, _ = report.tall(m)
    assert [line[1] for line in blocks[0]] == ["ioengine", "ioengine-uvloop", "fio", "caio", "ioengine/fio",
                                               "ioengine-uvloop/fio", "caio/fio"]
    assert [line[1] for line in report.tall(m, unicode=True)[1][1]][:2] == ["ioengine", "ioengine·uvloop"]
    uv_ratio = next(ln for ln in lines if "ioengine-uvloop/fio" in ln)
    assert "1.10x" in uv_ratio and "1.25x" in uv_ratio  # IOPS, CPU per I/O
    assert any("ioengine-uvloop = the same runs under uvloop" in ln for ln in lines)
    # rich's table: the same with the Unicode name, and the loops in the title.
    fancy = io.StringIO()
    report.print_table(m, fancy)
    text = fancy.getvalue()
    assert "ioengine (asyncio, uvloop) vs fio" in text and "ioengine·uvloop/fio" in text and "1.10x" in text
    assert "ioengine·uvloop = the same runs under uvloop" in text
    # Markdown: a column per loop for each figure, ratio columns named by loop.
    headers, cells, notes = report.columns(m, unicode=True)
    col = {h: i for i, h in enumerate(headers)}
    assert headers[:6] == ["row", "IOPS ioengine", "IOPS ioengine·uvloop", "IOPS fio", "IOPS ×fio (asyncio)",
                           "IOPS ×fio (uvloop)"]
    assert cells[0][col["IOPS ioengine·uvloop"]] == "55 000" and cells[0][col["IOPS ×fio (uvloop)"]] == "1.10×"
    assert cells[0][col["CPU ×fio (uvloop)"]] == "1.25×" and cells[0][col["CPU ×fio (asyncio)"]] == "1.83×"
    assert cells[0][col["lat p50/p99/p99.9 µs ioengine·uvloop"]] == "450/850/3 500"
    assert cells[0][col["p50 ×fio (uvloop)"]] == "1.12×"
    assert cells[0][col["IOPS caio"]] == "100 000" and cells[1][col["IOPS caio"]] == "skipped"
    assert "alternating ioengine, ioengine·uvloop and fio" in notes[0]
    md = report.markdown(m)
    assert md.startswith("| row | IOPS ioengine | IOPS ioengine·uvloop | IOPS fio | IOPS ×fio (asyncio) |")
    assert "| 1.10× |" in md
    # JSON: both loops' figures and ratios, and which loop each side ran on.
    report.write_json(m, str(tmp_path / "m.json"))
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["meta"]["loops"] == ["asyncio", "uvloop"]
    assert doc["meta"]["sides"] == {"ioengine": {"loop": "asyncio"}, "ioengine-uvloop": {"loop": "uvloop"}}
    row = doc["rows"][0]
    assert row["median"]["ioengine-uvloop"]["iops"] == pytest.approx(55_000)
    assert len(row["rounds"]["ioengine-uvloop"]) == 3
    assert row["ratio_to_fio"]["ioengine-uvloop"]["iops"] == pytest.approx(1.1)
    assert row["ratio_to_fio"]["ioengine"]["iops"] == pytest.approx(0.9)
    report.write_chart(m, str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_one_loop_keeps_the_plain_layout() -> None:
    m = _matrix()
    headers, _, notes = report.columns(m, unicode=True)
    assert headers[:4] == ["row", "IOPS ioengine", "IOPS fio", "IOPS ×fio"] and len(headers) == 12
    assert "Loops: ioengine = asyncio's default loop." in notes
    # uvloop alone: its side stands where ioengine's did.
    for r in m.rows:
        r.samples["ioengine-uvloop"] = r.samples.pop("ioengine")
    headers, cells, _ = report.columns(m, unicode=False)
    assert headers[:4] == ["row", "IOPS ioengine-uvloop", "IOPS fio", "IOPS xfio"] and cells[0][3] == "0.90x"


def test_missing_figures_are_dashes_and_nulls(tmp_path: Path) -> None:
    m = _matrix()
    m.rows[0].samples["fio"] = [Sample(1000.0, 4.1, math.nan)]
    assert math.isnan(m.rows[0].ratios()["cpu_us_per_io"])
    _, cells, _ = report.columns(m, unicode=False)
    assert cells[0][3] == "45.00x" and cells[0][7] == "-" and cells[0][11] == "-"
    report.write_json(m, str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text())["rows"][0]["median"]["fio"]["p50_us"] is None


# ------------------------------------------------------------------------------- loops


def test_matrix_alternates_both_loops_and_fio(monkeypatch: pytest.MonkeyPatch, scratch: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "caio", types.SimpleNamespace(AsyncioContext=_FakeCaioContext))
    called = []

    def side(name: str, iops: float):
        def run(path, size, pattern, seconds):
            called.append(name)
            return Sample(iops, iops * pattern.bs / 1e6, 10.0, 50.0, 90.0, 99.0)
        return run

    sides = {"ioengine": side("ioengine", 1000.0), "ioengine-uvloop": side("ioengine-uvloop", 1500.0),
             "fio": side("fio", 2000.0), "caio": side("caio", 500.0)}
    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 2, ReactorOptions(),
                   caio=True, sides=sides)
    assert called == ["ioengine", "ioengine-uvloop", "fio", "caio"] * 2
    out = capsys.readouterr().out
    assert "randread-qd1 round 2/2: ioengine 1000 IOPS" in out and "| ioengine-uvloop 1500 IOPS" in out
    assert m.meta["loops"] == ["asyncio", "uvloop"]
    assert m.rows[0].ratios("ioengine-uvloop")["iops"] == 0.75 and m.rows[0].ratios()["iops"] == 0.5
    # Explicit loops pick the sides; the injected runners stay as they are.
    called.clear()
    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 1, ReactorOptions(),
                   sides=sides, loops="uvloop", progress=None)
    assert called == ["ioengine-uvloop", "fio"] and list(m.rows[0].samples) == ["ioengine-uvloop", "fio"]
    assert m.meta["loops"] == ["uvloop"]


def test_default_runners_pass_the_loop(monkeypatch: pytest.MonkeyPatch, scratch: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    seen = []

    def fake_ioengine(path, size, pattern, seconds, options, latency=True, loop="asyncio", smp=1, cpuset=None):
        assert smp == 1
        seen.append(loop)
        return Sample(1000.0, 4.1, 10.0)

    monkeypatch.setattr(compare_mod, "run_ioengine_side", fake_ioengine)
    monkeypatch.setattr(compare_mod, "run_fio_side", lambda *a: (seen.append("fio"), Sample(2000.0, 8.2, 5.0))[1])
    if _has_uvloop():
        m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 1, ReactorOptions(),
                       progress=None)
        notes = [n for n in m.meta["notes"] if not n.startswith("fio's buffer memory")]
        assert seen == ["asyncio", "uvloop", "fio"] and notes == []
        seen.clear()
    # Without uvloop the default is asyncio's loop alone, and the table says why.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    m = run_matrix(str(scratch / "b.dat"), 1 << 20, select_rows("randread-qd1"), 0.1, 1, ReactorOptions())
    assert seen == ["asyncio", "fio"] and list(m.rows[0].samples) == ["ioengine", "fio"]
    assert "note: uvloop is not installed" in capsys.readouterr().out
    _, _, notes = report.columns(m, unicode=True)
    assert any(n.startswith("uvloop is not installed") for n in notes)


def test_run_pattern_runs_on_the_loop_asked_for(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    path = str(scratch / "p.dat")
    ensure_bench_file(path, 1 << 20)
    pat = Pattern("randread", 4096, 4)
    policy = asyncio.get_event_loop_policy()
    assert run_pattern(path, pat, 0.1).ios > 0
    with pytest.raises(ValueError, match="unknown loop 'trio'"):
        run_pattern(path, pat, 0.1, loop="trio")
    if _has_uvloop():
        r = run_pattern(path, pat, 0.1, loop="uvloop", latency=True)
        assert r.ios > 0 and len(r.latencies_ns) == r.ios
        assert asyncio.get_event_loop_policy() is policy  # restored
        # A policy that does not give uvloop's loop is caught, not measured as if it were uvloop.
        import uvloop

        monkeypatch.setattr(uvloop, "EventLoopPolicy", asyncio.DefaultEventLoopPolicy)
        with pytest.raises(RuntimeError, match="asked to run on the uvloop loop, but the running loop is asyncio"):
            run_pattern(path, pat, 0.1, loop="uvloop")
        assert asyncio.get_event_loop_policy() is policy
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with pytest.raises(UvloopUnavailable, match="uvloop is not installed"):
        run_pattern(path, pat, 0.1, loop="uvloop")
    assert asyncio.get_event_loop_policy() is policy


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
