"""ioengine-bench smp: cross-shard round trips, ioengine.smp against a multiprocessing Pipe.

Both sides do the same thing between two processes pinned to two CPUs: shard 0 calls an echo
function on shard 1 and waits for its answer.

* single: one call at a time; the round trip's p50 / p99 and round trips per second;
* pipelined: ``--inflight`` calls in flight (as many coroutines, each calling in a loop; the
  Pipe side keeps as many messages in the pipe), round trips per second.

The floor is printed after: two processes spinning in plain Python on the same rings, a pickled
call and its pickled answer, no event loop: what a round trip between Python shards cannot go
below on the machine, whatever the transport does.

CPU-µs per round trip (both processes' CPU time over the round trips) is quoted too: it is what
the figures cost, and it moves less than wall time on a shared machine. Rounds alternate
(Pipe, ioengine, Pipe, …) and medians are printed.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from .. import smp as _smp
from ..options import parse_cpuset
from .workloads import uvloop_module


@dataclass
class Sample:
    p50_us: float
    p99_us: float
    single_per_s: float
    pipelined_per_s: float
    cpu_us_single: float  # both processes' CPU time per round trip, single
    cpu_us_pipelined: float


def _echo(x: Any) -> Any:
    return x


def _cpu_time() -> float:
    return time.process_time()


def _percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


# -- ioengine.smp -------------------------------------------------------------------------------

async def _ioengine_side(count: int, seconds: float, inflight: int) -> Sample:
    submit = _smp.submit_to
    clock = time.perf_counter_ns
    for i in range(min(2000, count)):  # warm up both sides (imports, caches, the poller)
        await submit(1, _echo, i)
    c0, r0 = time.process_time(), await submit(1, _cpu_time)
    lat = []
    t0 = clock()
    for i in range(count):
        a = clock()
        await submit(1, _echo, i)
        lat.append(clock() - a)
    wall = (clock() - t0) / 1e9
    cpu_single = (time.process_time() - c0 + await submit(1, _cpu_time) - r0) / count * 1e6
    lat.sort()
    done = 0
    stop = False

    async def worker() -> None:
        nonlocal done
        i = 0
        while not stop:
            await submit(1, _echo, i)
            i += 1
        done += i

    c0, r0 = time.process_time(), await submit(1, _cpu_time)
    t0 = clock()
    tasks = [asyncio.ensure_future(worker()) for _ in range(inflight)]
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    pwall = (clock() - t0) / 1e9
    cpu_pipe = (time.process_time() - c0 + await submit(1, _cpu_time) - r0) / max(1, done) * 1e6
    return Sample(_percentile(lat, 0.5), _percentile(lat, 0.99), count / wall, done / pwall, cpu_single, cpu_pipe)


def measure_ioengine(count: int, seconds: float, inflight: int, cpus: list[int], loop: str = "asyncio",
                     **reactor_options: Any) -> Sample:
    """ioengine.smp's side on ``loop`` ("asyncio" or "uvloop": every shard runs the loop shard 0 runs)."""
    policy = uvloop_module().EventLoopPolicy() if loop == "uvloop" else asyncio.DefaultEventLoopPolicy()
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(policy)
    try:
        return _smp.run(_ioengine_side, count, seconds, inflight, smp=2, cpuset=tuple(cpus), **reactor_options)
    finally:
        asyncio.set_event_loop_policy(previous)


# -- multiprocessing Pipe -----------------------------------------------------------------------

def _pipe_server(conn: Any, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    while True:
        msg = conn.recv()
        if msg is None:
            conn.send(time.process_time())
            return
        conn.send(msg)


def measure_pipe(count: int, seconds: float, inflight: int, cpus: list[int]) -> Sample:
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    p = ctx.Process(target=_pipe_server, args=(theirs, cpus[1]), name="pipe-echo")
    p.start()
    theirs.close()
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    clock = time.perf_counter_ns
    try:
        send, recv = mine.send, mine.recv
        for i in range(min(2000, count)):
            send(i)
            recv()
        c0 = time.process_time()
        lat = []
        t0 = clock()
        for i in range(count):
            a = clock()
            send(i)
            recv()
            lat.append(clock() - a)
        wall = (clock() - t0) / 1e9
        cpu0_single = time.process_time() - c0
        lat.sort()
        # Pipelined: keep ``inflight`` messages in the pipes (small ones: they fit its buffer).
        c1 = time.process_time()
        t0 = clock()
        deadline = t0 + int(seconds * 1e9)
        for i in range(inflight):
            send(i)
        done = 0
        while True:
            recv()
            done += 1
            if clock() >= deadline:
                break
            send(done)
        for _ in range(inflight - 1):
            recv()
            done += 1
        pwall = (clock() - t0) / 1e9
        cpu0_pipe = time.process_time() - c1
        send(None)
        server_cpu = recv()  # the server's CPU time over both phases (a close approximation)
    finally:
        os.sched_setaffinity(0, old)
        p.join(5)
        if p.exitcode is None:
            p.kill()
            p.join()
        mine.close()
    total = count + done
    share = server_cpu / total * 1e6  # the server's CPU per message, spread evenly
    return Sample(_percentile(lat, 0.5), _percentile(lat, 0.99), count / wall, done / pwall,
                  cpu0_single / count * 1e6 + share, cpu0_pipe / done * 1e6 + share)


# -- the floor: Python spinning on the same rings, no event loop ---------------------------------

_FLOOR_CAP = 1 << 16  # bytes of each of the two rings


def _floor_rings(buf: Any) -> tuple[Any, Any, Any]:
    from .._native import ffi, lib

    base = ffi.from_buffer(buf)
    ring = lib.IE_SPSC_HEADER + _FLOOR_CAP
    return base, base + ring, ffi.new("char[]", _FLOOR_CAP)


def _floor_server(name: str, cpu: int, count: int) -> None:
    from multiprocessing import shared_memory

    from .._native import ffi, lib

    os.sched_setaffinity(0, {cpu})
    shm = shared_memory.SharedMemory(name)
    try:
        there, back, buf = _floor_rings(shm.buf)
        pop, push, loads, dumps, view = lib.ie_spsc_pop, lib.ie_spsc_push, pickle.loads, pickle.dumps, ffi.buffer(buf)
        for _ in range(count):
            n = pop(there, _FLOOR_CAP, buf)
            while not n:
                n = pop(there, _FLOOR_CAP, buf)
            out = dumps(_echo(loads(view[:n])))
            push(back, _FLOOR_CAP, out, len(out), ffi.NULL, -1)
        del there, back, buf, view
    finally:
        shm.close()


def measure_floor(count: int, cpus: list[int]) -> float:
    """Round trip p50 (µs) of two processes spinning in plain Python on ioengine.smp's rings
    (native/smp_ring.c): a pickled call and its pickled answer, no event loop, no future, no
    task. What a Python shard cannot go below on this machine, whatever its transport does."""
    from multiprocessing import shared_memory

    from .._native import ffi, lib

    shm = shared_memory.SharedMemory(create=True, size=2 * (lib.IE_SPSC_HEADER + _FLOOR_CAP))
    p = multiprocessing.get_context("spawn").Process(target=_floor_server, args=(shm.name, cpus[1], count + 2000),
                                                     name="floor-echo")
    p.start()
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    lat = []
    try:
        there, back, buf = _floor_rings(shm.buf)
        pop, push, loads, dumps, view = lib.ie_spsc_pop, lib.ie_spsc_push, pickle.loads, pickle.dumps, ffi.buffer(buf)
        clock = time.perf_counter_ns
        for i in range(count + 2000):
            a = clock()
            msg = dumps((i,))
            push(there, _FLOOR_CAP, msg, len(msg), ffi.NULL, -1)
            n = pop(back, _FLOOR_CAP, buf)
            while not n:
                if not p.is_alive():
                    raise RuntimeError("the floor's echo process died")
                n = pop(back, _FLOOR_CAP, buf)
            loads(view[:n])
            if i >= 2000:  # the first ones warm up both sides
                lat.append(clock() - a)
        del there, back, buf, view
    finally:
        os.sched_setaffinity(0, old)
        p.join(5)
        if p.exitcode is None:
            p.kill()
            p.join()
        shm.close()
        shm.unlink()
    lat.sort()
    return _percentile(lat, 0.5)


# -- the command --------------------------------------------------------------------------------

def main_smp(count: int = 20000, seconds: float = 2.0, rounds: int = 3, inflight: int = 200,
             cpuset: str | None = None, out: TextIO | None = None, loop: str = "asyncio",
             **reactor_options: Any) -> dict[str, dict[str, float]]:
    """Alternate Pipe and ioengine rounds; print and return the medians."""
    out = out or sys.stdout
    cpus = parse_cpuset(cpuset) if cpuset else sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit(f"ioengine-bench smp: needs two CPUs, the cpuset has {cpus}")
    cpus = cpus[:2]
    if loop == "uvloop":
        uvloop_module()  # missing: a clear error before anything runs
    print(f"cross-shard round trips between CPUs {cpus[0]} and {cpus[1]}: {count} single, then {inflight} in flight "
          f"for {seconds:g} s; {rounds} round(s), medians; ioengine.smp on {loop}", file=out, flush=True)
    sides: dict[str, list[Sample]] = {"mp.Pipe": [], "ioengine.smp": []}
    for r in range(rounds):
        sides["mp.Pipe"].append(measure_pipe(count, seconds, inflight, cpus))
        sides["ioengine.smp"].append(measure_ioengine(count, seconds, inflight, cpus, loop, **reactor_options))
        a, b = sides["mp.Pipe"][-1], sides["ioengine.smp"][-1]
        print(f"  round {r + 1}: Pipe p50 {a.p50_us:6.1f} us {a.pipelined_per_s:9.0f}/s | "
              f"ioengine p50 {b.p50_us:6.1f} us {b.pipelined_per_s:9.0f}/s", file=out, flush=True)
    med = {name: {k: statistics.median(asdict(s)[k] for s in samples) for k in asdict(samples[0])}
           for name, samples in sides.items()}
    rows = [("round trip p50 (us)", "p50_us", "{:.1f}"), ("round trip p99 (us)", "p99_us", "{:.1f}"),
            ("round trips/s, single", "single_per_s", "{:,.0f}"),
            (f"round trips/s, {inflight} in flight", "pipelined_per_s", "{:,.0f}"),
            ("CPU-us per round trip, single", "cpu_us_single", "{:.1f}"),
            (f"CPU-us per round trip, {inflight} in flight", "cpu_us_pipelined", "{:.1f}")]
    print(f"\n  {'median of ' + str(rounds):<36} {'mp.Pipe':>12} {'ioengine.smp':>13} {'ratio':>7}", file=out)
    for label, key, fmt in rows:
        a, b = med["mp.Pipe"][key], med["ioengine.smp"][key]
        better = (a / b if b else float("nan")) if key in ("p50_us", "p99_us") or key.startswith("cpu") else \
            (b / a if a else float("nan"))
        print(f"  {label:<36} {fmt.format(a):>12} {fmt.format(b):>13} {better:>6.2f}x", file=out)
    print("  (ratio: how many times better ioengine.smp is)", file=out)
    floor = statistics.median(measure_floor(count, cpus) for _ in range(rounds))
    print(f"  floor: two processes spinning in plain Python on the same rings (a pickled call, its pickled "
          f"answer; no event loop): round trip p50 {floor:.1f} us", file=out)
    med["floor"] = {"p50_us": floor}
    return med
