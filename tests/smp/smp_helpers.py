"""Functions and classes the smp tests send to other shards: module level, so they cross by reference."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import ioengine
from ioengine import OpenFlags, smp


def whoami() -> tuple[int, int, int]:
    return smp.this_shard_id(), smp.smp_count(), os.getpid()


async def awhoami(delay: float = 0.001) -> tuple[int, int]:
    await asyncio.sleep(delay)
    return smp.this_shard_id(), os.getpid()


def add(a, b=0, *, c=0):
    return a + b + c


def echo(x):
    return x


def raise_key(name: str) -> None:
    raise KeyError(f"no such key {name!r}")


async def araise_value(text: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(text)


class Unrebuildable(Exception):
    """Pickles, but does not unpickle (its __init__ wants two arguments)."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def raise_unrebuildable() -> None:
    raise Unrebuildable("x", "y")


def unpicklable_result():
    return lambda: 1


async def call_back(target: int):
    """From the shard this runs on, a call to ``target``: shards call each other, not only shard 0."""
    return smp.this_shard_id(), await smp.submit_to(target, whoami)


class Counter:
    """A sharded service: one per shard."""

    def __init__(self, start: int, marker_dir: str) -> None:
        self.value = start
        self.marker_dir = marker_dir

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    async def get(self) -> int:
        await asyncio.sleep(0)
        return self.value

    def shard(self) -> int:
        return smp.this_shard_id()

    async def stop(self) -> None:
        Path(self.marker_dir, f"stopped-{smp.this_shard_id()}").write_text(str(self.value))


async def write_read_file(directory: str) -> tuple[int, str, bool]:
    """O_DIRECT write then read of this shard's own file, through this shard's reactor."""
    shard = smp.this_shard_id()
    path = Path(directory, f"shard-{shard}.dat")
    async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
        buf = f.allocate_buffer(8192)
        buf[:] = bytes([shard + 1]) * 8192
        await f.dma_write(0, buf)
        got = await f.dma_read_exactly(0, 8192)
        direct = f.direct
        ok = bytes(got) == bytes([shard + 1]) * 8192
    return shard, ioengine.get_reactor().backend.name, ok and direct


async def read_handle(handle: smp.FileHandle, length: int) -> tuple[int, str, bytes]:
    async with await handle.to_file() as f:
        data = bytes(await f.dma_read_exactly(0, length))
    return smp.this_shard_id(), ioengine.get_reactor().backend.name, data


async def hold_file(path: str, marker: str) -> None:
    """Keep a file open until cancelled; record that its context manager closed it."""
    try:
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            buf = f.allocate_buffer(4096)
            buf[:] = b"h" * 4096
            await f.dma_write(0, buf)
            await asyncio.sleep(60)
    finally:
        Path(marker).write_text("closed" if f.closed else "open")


def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


async def read_blocks_report(path: str, count: int, depth: int) -> dict:
    """``count`` 4 KiB reads at ``depth``, then this shard's queue metrics for the file's disk."""
    import time

    async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
        blocks = f.logical_size // 4096
        left = count

        async def worker(k: int) -> None:
            nonlocal left
            buf = f.allocate_buffer(4096)
            i = k
            while left > 0:
                left -= 1
                await f.dma_read(i * 7919 % blocks * 4096, buf)
                i += depth
        t0 = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(depth)))
        t1 = time.monotonic()
    (disk,) = ioengine.metrics()[0]["disks"].values()
    q = disk["queue"]
    return {"shard": smp.this_shard_id(), "shared": q["shared"], "dispatched": q["dispatched_cost"],
            "capacity": q["capacity"], "t0": t0, "t1": t1, "pid": os.getpid()}


def return_unrebuildable() -> Unrebuildable:
    """A result that pickles here and does not unpickle on the caller's side."""
    return Unrebuildable("x", "y")
