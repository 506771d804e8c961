"""The reactor's token timer: when a throttled disk's tokens hold requests back, the reactor sets
a timer for when they will allow the next one. uvloop's ``call_at`` returns a plain Handle, with
no ``when()``, for a time its own clock has already passed; the reactor once asked that handle
for its time on the next dispatch, raised inside its flush and stopped dispatching. Real I/O on
every backend and loop; nothing may be lost or left waiting."""
from __future__ import annotations

import asyncio
import random

import pytest

import ioengine
from ioengine import OpenFlags as F
from iosched import IoQueue

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 128
PROPS = ("disks:\n  - mountpoint: {mp}\n    read_iops: 5000\n    read_bandwidth: 100000000\n"
         "    write_iops: 5000\n    write_bandwidth: 100000000\n")


def test_a_token_wait_already_past_on_the_loops_clock(run, scratch, monkeypatch: pytest.MonkeyPatch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    real = IoQueue.next_dispatch_time
    asked = {"n": 0}

    def at_once(self, now):
        # whatever the tokens say, the next dispatch is due a nanosecond from the reactor's
        # "now": by the time the timer is set the loop's clock has passed it
        t = real(self, now)
        if t is not None and now < t < float("inf"):
            asked["n"] += 1
            return now + 1e-9
        return t

    monkeypatch.setattr(IoQueue, "next_dispatch_time", at_once)
    errors: list[dict] = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:

            async def reader(seed):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(25):
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf) == BS
                    assert bytes(buf) == pattern_block(b, BS)

            def dispatch_twice():
                # two dispatches in one turn, the timer of the first not yet run (as when a
                # completion's flush follows the turn's own): the second looks at the first's timer
                r._dispatch_queues()
                r._dispatch_queues()
                if not all(t.done() for t in tasks):
                    loop.call_later(0.0005, dispatch_twice)

            tasks = [asyncio.ensure_future(reader(k)) for k in range(16)]
            loop.call_soon(dispatch_twice)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            await r.drain()
            assert r.inflight == 0

    run(main(), io_properties=PROPS.format(mp=scratch))
    assert asked["n"] > 0  # the tokens did hold requests back
    assert errors == []
