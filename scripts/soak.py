#!/usr/bin/env python3
"""Soak: mixed I/O on every backend in turn; RSS, open fds and pooled bytes must stay flat.

    python scripts/soak.py [--seconds 600] [--sample 3] [--dir .scratch/soak]

Runs, for --seconds split evenly over io_uring, linux-aio and threads (each on a fresh loop and
reactor through ioengine.run), a mix of concurrent workers on real O_DIRECT files:

- random 4k-64k dma_read / dma_readv of a data file, each checked against the known content;
- random dma_write / dma_writev to a second file, an fdatasync now and then, read back and checked;
- output streams writing a file of random size, flushed, closed, then read back through an
  input stream (read_exactly / readline / skip) and compared byte for byte;
- cancellations: reads, writes, stream writes and stream reads cancelled after a loop turn or
  two (the data written by a cancelled stream write must still be whole);
- open/close churn: files created, stat'ed, renamed, removed; a file opened and closed without I/O.

Every --sample seconds it samples RSS (/proc/self/statm), the open descriptors (/proc/self/fd)
and the reactor's pooled bytes (idle DMA blocks). After a warm-up (the first quarter of each
backend's time, at least two samples) each figure must stay within its tolerance of the
warm-up's largest value: RSS +8 MiB, fds +0, pooled bytes never above the pool's bound. The
descriptors must also be back where they started once each backend's reactor has closed.
Exit status 0 when everything held, 1 otherwise; the figures are printed (and written as JSON
with --json).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ioengine  # noqa: E402
from ioengine.fstream import (  # noqa: E402
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

BACKENDS = ("io_uring", "linux-aio", "threads")
PAGE = os.sysconf("SC_PAGE_SIZE")
DATA_BLOCKS = 4096  # 16 MiB data file of numbered 4 KiB blocks
BLOCK = 4096
RSS_TOLERANCE = 8 << 20
FD_TOLERANCE = 0
O = ioengine.OpenFlags


def block(i: int) -> bytes:
    return (i.to_bytes(8, "little") + b"soak-blk") * (BLOCK // 16)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Counters(dict):
    def add(self, k: str, n: int = 1) -> None:
        self[k] = self.get(k, 0) + n


class Soak:
    def __init__(self, d: Path, seed: int) -> None:
        self.dir = d
        self.rng = random.Random(seed)
        self.counts = Counters()
        self.data = d / "data.dat"

    # -- workers --------------------------------------------------------------------------

    async def reads(self, stop: float) -> None:
        f = await ioengine.open_file_dma(self.data, O.RO)
        rng = random.Random(self.rng.random())
        try:
            while time.monotonic() < stop:
                n = rng.choice((1, 1, 2, 4, 16))
                first = rng.randrange(DATA_BLOCKS - n)
                if rng.random() < 0.2 and n > 1:
                    bufs = [f.allocate_buffer(BLOCK) for _ in range(n)]
                    got = await f.dma_readv(first * BLOCK, bufs)
                    data = b"".join(bytes(b) for b in bufs)
                    for b in bufs:
                        b.release()
                    self.counts.add("readv")
                else:
                    buf = f.allocate_buffer(n * BLOCK)
                    got = await f.dma_read(first * BLOCK, buf)
                    data = bytes(buf)
                    buf.release()
                    self.counts.add("read")
                assert got == n * BLOCK, got
                assert data == b"".join(block(first + i) for i in range(n)), f"read at block {first} mismatched"
        finally:
            await f.close()

    async def writes(self, stop: float, k: int) -> None:
        path = self.dir / f"w{k}.dat"
        f = await ioengine.open_file_dma(path, O.RW | O.CREATE | O.TRUNCATE)
        rng = random.Random(self.rng.random())
        shadow: dict[int, int] = {}
        try:
            while time.monotonic() < stop:
                i = rng.randrange(512)
                tag = rng.randrange(1 << 30)
                if rng.random() < 0.2:
                    bufs = [f.allocate_buffer(BLOCK) for _ in range(2)]
                    bufs[0][:] = block(tag)
                    bufs[1][:] = block(tag + 1)
                    i = min(i, 510)
                    assert await f.dma_writev(i * BLOCK, bufs) == 2 * BLOCK
                    shadow[i], shadow[i + 1] = tag, tag + 1
                    for b in bufs:
                        b.release()
                    self.counts.add("writev")
                else:
                    b = f.allocate_buffer(BLOCK)
                    b[:] = block(tag)
                    assert await f.dma_write(i * BLOCK, b) == BLOCK
                    shadow[i] = tag
                    b.release()
                    self.counts.add("write")
                if rng.random() < 0.05:
                    await f.flush()
                    self.counts.add("fdatasync")
                if rng.random() < 0.05 and shadow:
                    j = rng.choice(list(shadow))
                    b = f.allocate_buffer(BLOCK)
                    await f.dma_read(j * BLOCK, b)
                    assert bytes(b) == block(shadow[j]), f"block {j} of {path} lost its write"
                    b.release()
        finally:
            await f.close()

    async def streams(self, stop: float, k: int) -> None:
        rng = random.Random(self.rng.random())
        n = 0
        while time.monotonic() < stop:
            path = self.dir / f"s{k}-{n % 3}.dat"
            n += 1
            f = await ioengine.open_file_dma(path, O.RW | O.CREATE | O.TRUNCATE)
            opts = FileOutputStreamOptions(buffer_size=rng.choice((16384, 65536, 131072)),
                                           write_behind=rng.randint(1, 4),
                                           preallocation_size=rng.choice((0, 1 << 20)))
            s = make_file_output_stream(f, opts)
            crc = 0
            total = 0
            for _ in range(rng.randint(1, 40)):
                piece = rng.randbytes(rng.choice((1, 100, 4096, 9000, 70000)))
                if rng.random() < 0.1:
                    # a cancelled write is still taken whole
                    t = asyncio.ensure_future(s.write(piece))
                    await asyncio.sleep(0)
                    t.cancel()
                    try:
                        await t
                    except asyncio.CancelledError:
                        self.counts.add("cancelled stream write")
                else:
                    await s.write(piece)
                crc = zlib.crc32(piece, crc)
                total += len(piece)
            await s.close()
            self.counts.add("stream file")
            g = await ioengine.open_file_dma(path, O.RO)
            rs = make_file_input_stream(g, 0, None, FileInputStreamOptions(buffer_size=rng.choice((8192, 65536)),
                                                                          read_ahead=rng.randint(0, 4)))
            rcrc = 0
            rtotal = 0
            while True:
                if rng.random() < 0.1:
                    t = asyncio.ensure_future(rs.read_exactly(rng.randint(1, 50000)))
                    await asyncio.sleep(0)
                    t.cancel()
                    try:
                        chunk = await t
                    except asyncio.CancelledError:
                        self.counts.add("cancelled stream read")
                        continue
                else:
                    chunk = await rs.read()
                if not chunk:
                    break
                rcrc = zlib.crc32(chunk, rcrc)
                rtotal += len(chunk)
            await rs.close()
            await g.close()
            assert (rtotal, rcrc) == (total, crc), f"{path}: read {rtotal} bytes back of {total}, or different"

    async def cancels(self, stop: float) -> None:
        f = await ioengine.open_file_dma(self.data, O.RO)
        r = ioengine.get_reactor()
        rng = random.Random(self.rng.random())
        try:
            while time.monotonic() < stop:
                bufs = [f.allocate_buffer(BLOCK * rng.choice((1, 4, 16))) for _ in range(rng.randint(1, 32))]
                tasks = [asyncio.ensure_future(f.dma_read(rng.randrange(DATA_BLOCKS - 16) * BLOCK, b)) for b in bufs]
                for _ in range(rng.randint(0, 2)):
                    await asyncio.sleep(0)
                for t in tasks:
                    t.cancel()
                res = await asyncio.gather(*tasks, return_exceptions=True)
                self.counts.add("cancelled read", sum(isinstance(r, asyncio.CancelledError) for r in res))
                for b in bufs:
                    b.release()
                # A cancelled read stays in flight until the kernel is done with its buffer: do
                # not outrun the disk (the reactor admits requests without bound).
                while r.inflight > 2 * r.options.ring_entries:
                    await asyncio.sleep(0.001)
        finally:
            await f.close()

    async def churn(self, stop: float) -> None:
        rng = random.Random(self.rng.random())
        d = self.dir / "churn"
        await ioengine.make_directory(d) if not d.exists() else None
        while time.monotonic() < stop:
            p = d / f"c{rng.randrange(8)}"
            async with await ioengine.open_file_dma(p, O.RW | O.CREATE) as f:
                if rng.random() < 0.5:
                    b = f.allocate_buffer(BLOCK)
                    await f.dma_write(0, b)
                    b.release()
                await f.stat()
            if rng.random() < 0.3:
                await ioengine.rename_file(p, d / "renamed")
                await ioengine.remove_file(d / "renamed")
            elif rng.random() < 0.3:
                await ioengine.remove_file(p)
            await ioengine.file_exists(p)
            self.counts.add("open/close")
            await asyncio.sleep(0)

    # -- one backend --------------------------------------------------------------------

    async def phase(self, seconds: float, sample_every: float, samples: list) -> None:
        stop = time.monotonic() + seconds
        r = ioengine.get_reactor()

        async def sampler() -> None:
            t0 = time.monotonic()
            while time.monotonic() < stop:
                await asyncio.sleep(sample_every)
                samples.append({"t": round(time.monotonic() - t0, 1), "rss": rss(), "fds": fds(),
                                "pooled": r.buffers.idle_bytes(), "inflight": r.inflight})

        workers = [self.reads(stop), self.reads(stop), self.writes(stop, 0), self.writes(stop, 1),
                   self.streams(stop, 0), self.streams(stop, 1), self.cancels(stop), self.churn(stop), sampler()]
        await asyncio.gather(*workers)
        await r.drain()


def judge(name: str, samples: list, pool_bound: int) -> list[str]:
    """Failures of one backend's samples (empty: it held)."""
    if len(samples) < 4:
        return [f"{name}: only {len(samples)} samples; run longer"]
    warm = max(2, len(samples) // 4)
    base, rest = samples[:warm], samples[warm:]
    bad = []
    for key, tol in (("rss", RSS_TOLERANCE), ("fds", FD_TOLERANCE)):
        top = max(s[key] for s in base)
        worst = max(s[key] for s in rest)
        if worst > top + tol:
            bad.append(f"{name}: {key} grew from {top} (warm-up) to {worst} (tolerance {tol})")
    worst_pool = max(s["pooled"] for s in samples)
    if worst_pool > pool_bound:
        bad.append(f"{name}: pooled bytes {worst_pool} above the pool's bound {pool_bound}")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--sample", type=float, default=3.0, help="seconds between samples")
    ap.add_argument("--dir", type=Path, default=ROOT / ".scratch" / "soak")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    backends = args.backends.split(",")
    args.dir.mkdir(parents=True, exist_ok=True)
    soak = Soak(args.dir, args.seed)
    with open(soak.data, "wb") as f:
        f.write(b"".join(block(i) for i in range(DATA_BLOCKS)))
    opts = ioengine.ReactorOptions()
    # The pool keeps at most buffer_pool_depth idle blocks per size (sizes 4 KiB .. max size).
    sizes = (opts.buffer_pool_max_size // 4096).bit_length()
    pool_bound = sum(opts.buffer_pool_depth * (4096 << i) for i in range(sizes))
    report: dict = {"seconds": args.seconds, "backends": {}, "failures": []}
    fd_start = fds()
    per = args.seconds / len(backends)
    t0 = time.monotonic()
    for name in backends:
        samples: list = []
        t = time.monotonic()
        try:
            ioengine.run(soak.phase(per, args.sample, samples), backend=name)
        except Exception as e:  # a data check or an I/O error: the soak failed
            report["failures"].append(f"{name}: {type(e).__name__}: {e}")
        fd_after = fds()
        bad = judge(name, samples, pool_bound)
        if fd_after != fd_start:
            bad.append(f"{name}: {fd_after} descriptors open after the reactor closed, {fd_start} before")
        report["failures"] += bad
        report["backends"][name] = {"seconds": round(time.monotonic() - t, 1), "samples": samples,
                                    "fds_after": fd_after}
        first, last = samples[0] if samples else {}, samples[-1] if samples else {}
        print(f"{name:9s} {len(samples):3d} samples  RSS {first.get('rss', 0) / 2**20:7.1f} -> "
              f"{last.get('rss', 0) / 2**20:7.1f} MiB (max {max((s['rss'] for s in samples), default=0) / 2**20:.1f})"
              f"  fds {first.get('fds')} -> {last.get('fds')} (after close {fd_after}, start {fd_start})"
              f"  pooled {first.get('pooled', 0) / 2**20:.1f} -> {last.get('pooled', 0) / 2**20:.1f} MiB"
              f"  {'ok' if not bad else 'FAILED'}", flush=True)
    report["counts"] = dict(sorted(soak.counts.items()))
    report["elapsed"] = round(time.monotonic() - t0, 1)
    print("operations:", ", ".join(f"{k} {v}" for k, v in report["counts"].items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    for msg in report["failures"]:
        print("FAIL:", msg, file=sys.stderr)
    print("soak:", "FAILED" if report["failures"] else f"ok ({report['elapsed']} s)")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
