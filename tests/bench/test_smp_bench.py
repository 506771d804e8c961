"""The cross-shard benchmark runs end to end (tiny counts; figures are not asserted)."""
import io

from ioengine.bench.__main__ import main
from ioengine.bench.smp import main_smp


def test_smp_benchmark_smoke():
    out = io.StringIO()
    med = main_smp(count=300, seconds=0.2, rounds=1, inflight=20, out=out)
    text = out.getvalue()
    for part in ("round trip p50 (us)", "round trips/s, 20 in flight", "mp.Pipe", "ioengine.smp"):
        assert part in text
    for side in ("mp.Pipe", "ioengine.smp"):
        assert med[side]["p50_us"] > 0 and med[side]["pipelined_per_s"] > 0 and med[side]["single_per_s"] > 0
    assert "floor: two processes spinning in plain Python" in text and med["floor"]["p50_us"] > 0


def test_smp_benchmark_is_a_subcommand(capsys):
    assert main(["smp", "--count", "200", "--seconds", "0.1", "--rounds", "1", "--inflight", "5"]) == 0
    assert "round trips/s, 5 in flight" in capsys.readouterr().out


def test_smp_benchmark_runs_the_shards_on_uvloop(capsys):
    import pytest
    pytest.importorskip("uvloop")
    assert main(["smp", "--count", "200", "--seconds", "0.1", "--rounds", "1", "--inflight", "5",
                 "--loop", "uvloop"]) == 0
    assert "ioengine.smp on uvloop" in capsys.readouterr().out
