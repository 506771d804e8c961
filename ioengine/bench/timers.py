"""ioengine-bench timers: how late ``asyncio.sleep(d)`` wakes, with and without precise timers.

asyncio's selector loops wait in whole milliseconds (epoll_wait), so a sleep of 200 µs took
~1.2 ms, and I/O paced by sleeps (rate limits, think times, open-loop load) left in bursts.
ReactorOptions.precise_timers waits with a nanosecond timeout and, with idle polling on, spins
the last stretch the kernel's wake-up has been taking. Sides, alternating, medians of rounds:

* ``ioengine``: ``ioengine.run`` on asyncio's default loop (the defaults: precise timers, polling);
* ``ioengine ms``: the same with ``precise_timers=False`` (asyncio's own waits);
* ``asyncio``: plain ``asyncio.run``, no reactor;
* ``ioengine·uvloop``: under uvloop, when installed (libuv's timers count in milliseconds);
* ``fio``: fio's ``thinktime`` on the null engine, the reference: fio reports only the job's
  runtime, so its column is the mean lateness per I/O (runtime / I/Os - d).

Each side also shows the CPU it spends per sleep (a precise timer spins what a wake-up costs).
"""
from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from .fio_json import FioError, run_fio

DEFAULT_DELAYS_US = (50, 200, 500, 2000)


@dataclass
class Lateness:
    p50_us: float
    p99_us: float
    mean_us: float
    cpu_us: float  # CPU time (user + system) per sleep


async def _sleeps(delays_us: tuple[int, ...], count: int) -> dict[int, Lateness]:
    out = {}
    clock = time.perf_counter
    for d_us in delays_us:
        d = d_us * 1e-6
        late = []
        cpu = time.process_time()
        for _ in range(count):
            t = clock()
            await asyncio.sleep(d)
            late.append((clock() - t - d) * 1e6)
        cpu = (time.process_time() - cpu) / count * 1e6
        late.sort()
        out[d_us] = Lateness(statistics.median(late), late[min(len(late) - 1, int(len(late) * 0.99))],
                             statistics.fmean(late), cpu)
    return out


def _run_side(side: str, delays_us: tuple[int, ...], count: int) -> dict[int, Lateness]:
    import ioengine

    if side == "asyncio":
        return asyncio.run(_sleeps(delays_us, count))
    if side == "ioengine ms":
        return ioengine.run(_sleeps(delays_us, count), precise_timers=False)
    if side == "ioengine·uvloop":
        import uvloop

        policy = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        try:
            return ioengine.run(_sleeps(delays_us, count))
        finally:
            asyncio.set_event_loop_policy(policy)
    return ioengine.run(_sleeps(delays_us, count))


def _fio_side(delays_us: tuple[int, ...], count: int) -> dict[int, Lateness] | str:
    out = {}
    n_ios = max(count, 2000)  # fio reports its runtime in ms: enough I/Os that it resolves µs per I/O
    for d_us in delays_us:
        try:
            res = run_fio(["--name=think", "--ioengine=null", "--rw=read", "--bs=4k", "--size=1g",
                           f"--number_ios={n_ios}", f"--thinktime={d_us}"], timeout=60 + n_ios * d_us * 4e-6)
        except FioError as e:
            return str(e).splitlines()[0]
        job = res.jobs[0]
        n = job.read.total_ios
        mean = job.runtime_ms * 1000 / n - d_us if n else float("nan")
        nan = float("nan")
        out[d_us] = Lateness(nan, nan, mean, nan)
    return out


def main_timers(delays_us: tuple[int, ...] = DEFAULT_DELAYS_US, count: int = 300, rounds: int = 3,
                out: TextIO | None = None) -> dict[str, Any]:
    out = out if out is not None else sys.stdout
    sides = ["ioengine", "ioengine ms", "asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        sides.append("ioengine·uvloop")
    print(f"asyncio.sleep(d) lateness: {count} sleeps per delay, {rounds} round(s), sides alternating, "
          f"medians of rounds", file=out)
    runs: dict[str, list[dict[int, Lateness]]] = {s: [] for s in sides}
    fio_runs: list[dict[int, Lateness]] = []
    fio_error = None
    for i in range(rounds):
        for s in sides:
            runs[s].append(_run_side(s, delays_us, count))
        if fio_error is None:
            got = _fio_side(delays_us, count)
            if isinstance(got, str):
                fio_error = got
            else:
                fio_runs.append(got)
        print(f"  round {i + 1}: " + " | ".join(
            f"{s} p50 " + "/".join(f"{runs[s][-1][d].p50_us:.0f}" for d in delays_us) for s in sides) + " µs", file=out)

    def med(rs: list[dict[int, Lateness]], d: int, attr: str) -> float:
        return statistics.median(getattr(r[d], attr) for r in rs)

    table: dict[str, Any] = {}
    print(file=out)
    head = f"{'delay':>8}  " + "  ".join(f"{s:>22}" for s in sides) + f"  {'fio thinktime':>14}"
    print(head + "\n" + f"{'':>8}  " + "  ".join(f"{'p50 / p99 late, CPU':>22}" for _ in sides)
          + f"  {'mean late':>14}", file=out)
    for d in delays_us:
        row = {s: {k: med(runs[s], d, k) for k in ("p50_us", "p99_us", "mean_us", "cpu_us")} for s in sides}
        fio_mean = med(fio_runs, d, "mean_us") if fio_runs else float("nan")
        row["fio"] = {"mean_us": fio_mean}
        table[str(d)] = row
        cells = "  ".join(f"{row[s]['p50_us']:>7.0f} /{row[s]['p99_us']:>6.0f}, {row[s]['cpu_us']:>5.0f}"
                          for s in sides)
        print(f"{d:>6}µs  {cells}  {fio_mean:>12.1f}", file=out)
    print("\n(late: µs past the deadline at which the sleeping coroutine runs again; CPU: µs per sleep)", file=out)
    for d in delays_us:
        row = table[str(d)]
        ours, plain = row["ioengine"]["mean_us"], row["asyncio"]["mean_us"]
        fio_mean = row["fio"]["mean_us"]
        vs_fio = f", fio's thinktime {fio_mean:.1f} µs late on average" if fio_runs else ""
        print(f"  {d} µs: ioengine {ours:.1f} µs late on average against asyncio's {plain:.1f} "
              f"({plain / ours if ours > 0 else float('inf'):.0f}x less){vs_fio}", file=out)
    if fio_error:
        print(f"  (fio not measured: {fio_error})", file=out)
    return table
