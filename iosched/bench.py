"""Scheduler CPU per request on a null device (no I/O): queue + dispatch + complete.

    python -m iosched.bench --null [--requests N] [--batch B] [--classes C]

Virtual time advances by exactly the cost of each batch, so the token bucket always has
room for the next batch and what is measured is the scheduler's own work. The last line is
a class alone, dispatched under direct grants (IoQueue.open_grant): the engine's path when
nothing else waits. The real-disk
benchmarks of issue 4 live with the engine (they need it); this is item (d).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

from .cost import READ
from .io_group import IoGroup, SharedDisk
from .io_queue import DirectGrant, IoQueue
from .properties import DiskProperties

BENCH_DISK = DiskProperties(("/null",), read_iops=1_000_000, read_bandwidth=8e9,
                            write_iops=500_000, write_bandwidth=4e9)


def run_null(requests: int, batch: int, classes: int, throttled: bool,
             shared: SharedDisk | None = None) -> dict[str, float]:
    """``shared``: the queue shares its bucket and shares with other shards (io_group)."""
    q = IoQueue(BENCH_DISK if throttled else None, shared=shared)
    states = [q.create_class(f"c{i}", 100 * (i + 1)) for i in range(classes)]
    cost = q.cost_model.cost(READ, 4096)
    now = 0.0
    step = cost * batch
    t_queue = t_dispatch = t_complete = 0.0
    done = 0
    queue, dispatch, complete = q.queue, q.dispatch, q.complete
    pc = time.perf_counter
    gc_was = gc.isenabled()
    gc.disable()  # measure the scheduler, not when the collector happens to run
    try:
        while done < requests:
            t0 = pc()
            for i in range(batch):
                queue(states[i % classes], READ, 4096, None, now)
            t1 = pc()
            ds = dispatch(now)
            t2 = pc()
            for d in ds:
                complete(d, 4096, now)
            t3 = pc()
            t_queue += t1 - t0
            t_dispatch += t2 - t1
            t_complete += t3 - t2
            done += len(ds)
            now += step
    finally:
        if gc_was:
            gc.enable()
    n = done
    return {
        "requests": n,
        "queue_us": t_queue / n * 1e6,
        "dispatch_us": t_dispatch / n * 1e6,
        "complete_us": t_complete / n * 1e6,
        "total_us": (t_queue + t_dispatch + t_complete) / n * 1e6,
    }


def run_null_grants(requests: int, batch: int, shared: SharedDisk | None = None) -> dict[str, float]:
    """One class alone through direct grants: open, ``batch`` takes, commit, book completions."""
    q = IoQueue(BENCH_DISK, shared=shared)
    cls = q.get_class(q.config.default_class)
    step = q.cost_model.cost(READ, 4096) * batch
    now = 0.0
    done = 0
    open_grant, commit, complete = q.open_grant, q.commit_grant, q.complete_grant
    pc = time.perf_counter
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = pc()
        while done < requests:
            g: DirectGrant = open_grant(cls, now)  # type: ignore[assignment]  # a class alone always gets one
            take = g.take
            for _ in range(batch):
                take(READ, 4096)
            commit(g)
            complete(g, g.n, now)
            done += g.n
            now += step
        t = pc() - t0
    finally:
        if gc_was:
            gc.enable()
    return {"requests": done, "total_us": t / done * 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iosched.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--null", action="store_true", help="null device: scheduler CPU per request (the only mode here)")
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=32, help="requests queued per dispatch() call")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args(argv)
    if not args.null:
        ap.error("only --null is implemented here; the real-disk benchmark runs through ioengine")
    print(f"iosched null-device benchmark: {args.requests} x 4 KiB reads, batches of {args.batch}, "
          f"best of {args.repeat}")
    print(f"{'case':34} {'queue':>8} {'dispatch':>9} {'complete':>9} {'total':>8}  (us/request)")
    for classes, throttled in ((1, True), (4, True), (16, True), (1, False), (4, False)):
        best = min(
            (run_null(args.requests, args.batch, classes, throttled) for _ in range(args.repeat)),
            key=lambda r: r["total_us"],
        )
        label = f"{classes} class{'es' if classes > 1 else ''}, {'io_properties' if throttled else 'no properties'}"
        print(f"{label:34} {best['queue_us']:8.3f} {best['dispatch_us']:9.3f} {best['complete_us']:9.3f} "
              f"{best['total_us']:8.3f}")
    # What the engine does for a class alone (nothing else waiting): the per-request take is
    # a method call here; the engine inlines it, so this is an upper bound.
    best = min((run_null_grants(args.requests, args.batch) for _ in range(args.repeat)), key=lambda r: r["total_us"])
    print(f"{'1 class alone, direct grants':34} {'':8} {'':9} {'':9} {best['total_us']:8.3f}")
    print_shared_rows(args.requests, args.batch, args.repeat, lambda: IoGroup(1).disk(0, 0), "in-process io group")
    return 0


def print_shared_rows(requests: int, batch: int, repeat: int, make: Callable[[], SharedDisk], label: str) -> None:
    """The io group's rows: a queue sharing its disk with other shards (none here: its cost alone)."""
    for classes in (1, 4):
        best = min((run_null(requests, batch, classes, True, make()) for _ in range(repeat)),
                   key=lambda r: r["total_us"])
        row = f"{classes} class{'es' if classes > 1 else ''}, {label}"
        print(f"{row:34} {best['queue_us']:8.3f} {best['dispatch_us']:9.3f} {best['complete_us']:9.3f} "
              f"{best['total_us']:8.3f}")
    best = min((run_null_grants(requests, batch, make()) for _ in range(repeat)), key=lambda r: r["total_us"])
    row = f"1 class alone, grants, {label}"
    print(f"{row:34} {'':8} {'':9} {'':9} {best['total_us']:8.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
