"""ReactorOptions.io_anticipate, real I/O on every backend and loop: classes ahead in fairness wait
for a class whose requests are in the disk and whose tasks are about to queue more. What the
shares come to on the real disk is a benchmark (docs/scheduler.md); here: the hold always ends
(nothing waits forever, with the large class finishing first or last), and nothing is lost."""
from __future__ import annotations

import asyncio
import random

import ioengine
from ioengine import OpenFlags as F

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 256
PROPS = ("disks:\n  - mountpoint: {mp}\n    read_iops: 20000\n    read_bandwidth: 400000000\n"
         "    write_iops: 20000\n    write_bandwidth: 400000000\n")


def test_held_classes_complete_whoever_finishes_first(run, scratch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    big, small = ioengine.IoClass("ant_big", 990), ioengine.IoClass("ant_small", 10)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            done = {big.name: 0, small.name: 0}

            async def reader(cls, seed, reads):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                    assert bytes(buf) == pattern_block(b, BS)
                    done[cls.name] += 1

            # the large class stops early, then the small one runs alone: its hold must end
            await asyncio.gather(*(reader(big, k, 20) for k in range(8)),
                                 *(reader(small, 100 + k, 40) for k in range(8)))
            assert done == {big.name: 160, small.name: 320}
            # the other way round: the small class stops first
            await asyncio.gather(*(reader(big, 200 + k, 60) for k in range(8)),
                                 *(reader(small, 300 + k, 3) for k in range(8)))
            await r.drain()
            assert r.inflight == 0

    run(main(), io_properties=PROPS.format(mp=scratch), io_anticipate=True)
