"""One commit (a 40 KB write + flush) through the output stream, against plain Python
``os.write`` + ``os.fsync`` on the same disk: p50/p99 over N commits, alternating rounds.

Three stream rows: the default (``trim_on_flush=True``: the file's size is the data's after each
flush), ``trim_on_flush=False`` (Seastar's: the file runs ahead of the data until close), and
that on a file opened with ``OpenFlags.DSYNC`` (a commit is one write, no fdatasync).

    python scripts/commit_latency.py [--n 1000] [--rounds 3] [--size 40960] [--dir .scratch]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import ioengine
from ioengine import OpenFlags


async def stream_commits(path: str, n: int, size: int, trim: bool = True, dsync: bool = False) -> list[float]:
    flags = OpenFlags.WO | OpenFlags.CREATE | OpenFlags.TRUNCATE | (OpenFlags.DSYNC if dsync else 0)
    out = ioengine.make_file_output_stream(await ioengine.open_file_dma(path, flags),
                                           ioengine.FileOutputStreamOptions(trim_on_flush=trim))
    data = os.urandom(size)
    lat = []
    for _ in range(n):
        t = time.perf_counter_ns()
        await out.write(data)
        await out.flush()
        lat.append((time.perf_counter_ns() - t) / 1000)
    await out.close()
    return lat


def plain_commits(path: str, n: int, size: int) -> list[float]:
    data = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    lat = []
    try:
        for _ in range(n):
            t = time.perf_counter_ns()
            os.write(fd, data)
            os.fsync(fd)
            lat.append((time.perf_counter_ns() - t) / 1000)
    finally:
        os.close(fd)
    return lat


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=40960)
    ap.add_argument("--dir", default=".scratch")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    ps, pp = os.path.join(a.dir, "commit-stream.dat"), os.path.join(a.dir, "commit-plain.dat")
    rows: dict[str, list[float]] = {"plain": [], "stream": [], "stream-notrim": [], "stream-notrim-dsync": []}
    for i in range(a.rounds):
        res = {"plain": plain_commits(pp, a.n, a.size),
               "stream": asyncio.run(stream_commits(ps, a.n, a.size, True)),
               "stream-notrim": asyncio.run(stream_commits(ps, a.n, a.size, False)),
               "stream-notrim-dsync": asyncio.run(stream_commits(ps, a.n, a.size, False, True))}
        base = pct(res["plain"], 50)
        print(f"round {i + 1}: " + " | ".join(
            f"{k} p50 {pct(v, 50):.0f} us p99 {pct(v, 99):.0f} ({pct(v, 50) / base:.2f}x)" for k, v in res.items()),
            flush=True)
        for k, v in res.items():
            rows[k].append(pct(v, 50))
    mp = statistics.median(rows["plain"])
    streams = [k for k in rows if k != "plain"]
    print(f"median p50: plain write+fsync {mp:.0f} us, "
          + ", ".join(f"{k} {statistics.median(rows[k]):.0f} us" for k in streams)
          + "; median of the per-round ratios: "
          + ", ".join(f"{k} {statistics.median(s / p for s, p in zip(rows[k], rows['plain'])):.2f}x" for k in streams))
    for f in (ps, pp):
        os.unlink(f)


if __name__ == "__main__":
    main()
