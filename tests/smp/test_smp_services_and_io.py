"""Sharded services, real O_DIRECT I/O on every shard's own reactor, file handles across shards."""
from __future__ import annotations

import operator
import os

import pytest

import ioengine
from ioengine import OpenFlags, smp

import smp_helpers as h


def test_sharded_service_lifecycle(scratch):
    async def main():
        s = smp.sharded(h.Counter, 10, str(scratch))
        await s.start()
        after_add = await s.invoke_on(1, "add", 5)
        local = s.local().value
        shards = await s.invoke_on_all("shard")
        values = await s.invoke_on_all("get")  # an async method
        total = await s.map_reduce(operator.add, "get")
        total0 = await s.map_reduce0("add", 100, operator.add, 1)
        try:
            await s.invoke_on(1, "add", lambda: 1)
        except TypeError as e:
            refused = str(e)
        await s.stop()
        try:
            s.local()
        except RuntimeError as e:
            gone = str(e)
        return after_add, local, shards, values, total, total0, refused, gone

    after_add, local, shards, values, total, total0, refused, gone = ioengine.run(main, smp=2)
    assert after_add == 15 and local == 10
    assert shards == [0, 1] and values == [10, 15] and total == 25
    assert total0 == 100 + 11 + 16
    assert "Counter.add" in refused and "argument 0 (positional" in refused
    assert "not started on shard 0" in gone
    # stop() ran on every shard, with each shard's own state
    assert (scratch / "stopped-0").read_text() == "11" and (scratch / "stopped-1").read_text() == "16"


def test_each_shard_does_direct_io_through_its_own_reactor(backend, scratch):
    async def main():
        return await smp.invoke_on_all(h.write_read_file, str(scratch))

    results = ioengine.run(main, smp=2, backend=backend)
    assert results == [(0, backend, True), (1, backend, True)]
    for shard in (0, 1):
        assert (scratch / f"shard-{shard}.dat").read_bytes() == bytes([shard + 1]) * 8192


def test_a_file_written_on_shard_0_is_read_on_shard_1(backend, scratch):
    path = scratch / "shared.dat"

    async def main():
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            buf = f.allocate_buffer(4096)
            buf[:] = b"shard zero wrote this".ljust(4096, b".")
            await f.dma_write(0, buf)
            handle = smp.file_handle(f)
            remote = await smp.submit_to(1, h.read_handle, handle, 4096)
            # the path renamed away: the handle still reaches the file while shard 0 holds it open
            os.rename(path, scratch / "moved.dat")
            moved = await smp.submit_to(1, h.read_handle, handle, 32)
            local = await h.read_handle(handle, 32)
        return handle, remote, moved, local

    handle, (shard, name, data), moved, local = ioengine.run(main, smp=2, backend=backend)
    assert shard == 1 and name == backend
    assert data == b"shard zero wrote this".ljust(4096, b".")
    assert moved[2] == local[2] == data[:32]
    assert handle.flags & os.O_ACCMODE == os.O_RDWR and not handle.flags & os.O_CREAT


def test_a_handle_of_a_closed_and_removed_file_says_so(scratch):
    path = scratch / "gone.dat"

    async def main():
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            handle = smp.file_handle(f)
        os.remove(path)
        with pytest.raises(FileNotFoundError, match="can no longer be opened"):
            await smp.submit_to(1, h.read_handle, handle, 1)
        return True

    assert ioengine.run(main, smp=2)
