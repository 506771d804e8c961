"""The timer benchmark runs end to end (tiny counts; figures are not asserted), and a bad
--delays is a clear error."""
import io
import math

from ioengine.bench.__main__ import main
from ioengine.bench.timers import main_timers


def test_timers_benchmark_smoke():
    out = io.StringIO()
    table = main_timers((50, 300), count=5, rounds=1, out=out)
    text = out.getvalue()
    assert "ioengine ms" in text and "asyncio" in text and "fio thinktime" in text
    for d in ("50", "300"):
        for side in ("ioengine", "ioengine ms", "asyncio"):
            row = table[d][side]
            assert all(math.isfinite(row[k]) for k in ("p50_us", "p99_us", "mean_us", "cpu_us"))
            assert row["mean_us"] > -1  # asyncio's loops never wake before the deadline
        assert math.isfinite(table[d]["fio"]["mean_us"])  # fio's null engine with thinktime ran


def test_timers_is_a_subcommand(capsys):
    assert main(["timers", "--delays", "100", "--count", "3", "--rounds", "1"]) == 0
    assert "µs late on average" in capsys.readouterr().out


def test_bad_delays_are_refused(capsys):
    assert main(["timers", "--delays", "0,abc"]) == 2
    assert "--delays wants positive whole µs" in capsys.readouterr().err
