"""One commit (a 40 KB write + flush) through the output stream, against plain Python
``os.write`` + ``os.fsync`` on the same disk: p50/p99 over N commits, alternating rounds.

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


async def stream_commits(path: str, n: int, size: int) -> list[float]:
    out = ioengine.make_file_output_stream(
        await ioengine.open_file_dma(path, OpenFlags.WO | OpenFlags.CREATE | OpenFlags.TRUNCATE))
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
    rs, rp = [], []
    for i in range(a.rounds):
        s = asyncio.run(_run(ps, a.n, a.size))
        p = plain_commits(pp, a.n, a.size)
        rs.append(pct(s, 50))
        rp.append(pct(p, 50))
        print(f"round {i + 1}: stream p50 {pct(s, 50):.0f} us p99 {pct(s, 99):.0f} | "
              f"plain p50 {pct(p, 50):.0f} us p99 {pct(p, 99):.0f} | ratio {pct(s, 50) / pct(p, 50):.2f}")
    ms, mp = statistics.median(rs), statistics.median(rp)
    print(f"median p50: stream {ms:.0f} us, plain write+fsync {mp:.0f} us, ratio {ms / mp:.2f}")
    for f in (ps, pp):
        os.unlink(f)


async def _run(path: str, n: int, size: int) -> list[float]:
    return await stream_commits(path, n, size)


if __name__ == "__main__":
    main()
