"""ReactorOptions.io_share_in_disk: the in-disk bound split among busy io classes by shares, real
I/O on every backend and loop. What it achieves on the real disk is a benchmark (`python
scripts/shares.py --iops N --share --in-disk-goals G`), not a test, and the parts themselves are
checked on the queue (tests/iosched/test_share_in_disk.py); here: a class within its part is
never queued behind one over its own, the other is held, and nothing is lost."""
from __future__ import annotations

import asyncio
import os
import random
import sys

import pytest

import ioengine
from ioengine import OpenFlags as F
from iosched import READ

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 256
PROPS = ("disks:\n  - mountpoint: {mp}\n    read_iops: 100000\n    read_bandwidth: 4000000000\n"
         "    write_iops: 100000\n    write_bandwidth: 4000000000\n")


def test_each_class_stays_within_its_part_and_a_class_within_it_is_never_queued(run, scratch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    hi, lo = ioengine.IoClass("sid_hi", 400), ioengine.IoClass("sid_lo", 100)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())
            one = queue.cost_model.cost(READ, BS)
            seen = {"hi_queued": 0, "lo_queued": 0, "lo_over": 0.0, "hi_over": 0.0}

            async def reader(cls, seed, reads):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                    assert bytes(buf) == pattern_block(b, BS)
                    states = r.disks.states_of(queue)
                    sh, sl = states[hi], states[lo]
                    bound = queue.in_disk_bound
                    seen["hi_queued"] = max(seen["hi_queued"], sh.nr_queued)
                    seen["lo_queued"] = max(seen["lo_queued"], sl.nr_queued)
                    # The small class fills the whole bound while the large one has nothing in the
                    # disk or waiting (a lone busy class has it all), so only the bound holds it;
                    # the large one, with fewer tasks than its part, stays within its part.
                    seen["lo_over"] = max(seen["lo_over"], sl.in_disk_cost - bound - one)
                    seen["hi_over"] = max(seen["hi_over"], sh.in_disk_cost - bound * 0.8)

            # the bound is ~10 reads (parts: 8 and 2): 3 tasks of the large class stay within
            # its part, 16 of the small one's are far over theirs
            await asyncio.gather(*(reader(hi, k, 60) for k in range(3)),
                                 *(reader(lo, 100 + k, 30) for k in range(16)))
            r.settle_grants()
            states = r.disks.states_of(queue)
            assert r.inflight == 0 and queue.in_disk == 0
            assert states[hi].in_disk_cost == pytest.approx(0.0, abs=1e-9)
            assert states[lo].in_disk_cost == pytest.approx(0.0, abs=1e-9)
            assert states[hi].ops[READ] == 3 * 60 and states[lo].ops[READ] == 16 * 30
        assert seen["lo_queued"] > 0  # held back by its part
        assert seen["hi_queued"] == 0  # within its part: direct, whatever waits
        assert seen["lo_over"] <= 1e-9 and seen["hi_over"] <= 1e-9

    capacity_goals = 10 / 75  # 75 reads fit the 0.75 ms goal at 100k IOPS: the bound is ~10
    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk=True, io_in_disk_goals=capacity_goals,
        io_wakeup_budget=0)


def test_by_default_busy_classes_split_the_share_bound(run, scratch):
    """The defaults: io_share_in_disk on, the split bound io_share_in_disk_goals below the bound a
    class alone keeps (io_in_disk_goals): with both busy, the small class waits for its part and
    the large one, within its own, is never queued."""
    assert ioengine.ReactorOptions().io_share_in_disk
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    hi, lo = ioengine.IoClass("sidd_hi", 400), ioengine.IoClass("sidd_lo", 100)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())
            seen = {"hi": 0, "lo": 0}

            async def reader(cls, key, seed, reads):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                    assert bytes(buf) == pattern_block(b, BS)
                    seen[key] = max(seen[key], r.disks.states_of(queue)[cls].nr_queued)

            await asyncio.gather(*(reader(hi, "hi", k, 60) for k in range(3)),
                                 *(reader(lo, "lo", 100 + k, 30) for k in range(16)))
            r.settle_grants()
            assert r.inflight == 0 and queue.in_disk == 0
            assert queue.in_disk_bound > 100 * queue.cost_model.cost(READ, BS)  # alone: io_in_disk_goals
        assert seen["lo"] > 0 and seen["hi"] == 0

    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk_goals=10 / 75, io_wakeup_budget=0)


def test_cancelled_reads_of_a_held_class_lose_nothing(run, scratch):
    """Reads of the small class cancelled while held in the queue for its part: the others
    complete, and the reactor drains with the books back at zero."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    hi, lo = ioengine.IoClass("sidc_hi", 400), ioengine.IoClass("sidc_lo", 100)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())

            async def reader(cls, seed, reads):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                    assert bytes(buf) == pattern_block(b, BS)

            keep = [asyncio.ensure_future(reader(hi, k, 40)) for k in range(3)]
            doomed = [asyncio.ensure_future(reader(lo, 100 + k, 1000)) for k in range(16)]
            await asyncio.sleep(0.01)
            for t in doomed:
                t.cancel()
            await asyncio.gather(*keep)
            for t in doomed:
                with pytest.raises(asyncio.CancelledError):
                    await t
            await r.drain()
            r.settle_grants()
            states = r.disks.states_of(queue)
            assert r.inflight == 0 and queue.queued == 0 and queue.in_disk == 0
            assert states[lo].in_disk_cost == pytest.approx(0.0, abs=1e-9)

    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk=True, io_in_disk_goals=10 / 75,
        io_wakeup_budget=0)


def test_a_class_within_its_part_keeps_the_c_path_while_the_other_waits(run, scratch):
    """IoPath.share_direct: while the small class waits in the queue, the large class's reads
    under its open grant are staged by C (Reactor.submit_request), not the Python path."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    hi, lo = ioengine.IoClass("sidp_hi", 400), ioengine.IoClass("sidp_lo", 100)

    async def main():
        r = ioengine.get_reactor()
        assert r._path.share_direct
        c_path = r.submit_request
        taken = {"hi": 0, "lo": 0}

        def counting(*args):
            waiting = r._path.sched_waiting
            fut = c_path(*args)
            if fut is not None and waiting:
                taken["hi" if args[-1] is hi else "lo"] += 1
            return fut

        r.submit_request = counting
        async with await ioengine.open_file_dma(path, F.RO) as f:
            async def reader(cls, seed, reads):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                    assert bytes(buf) == pattern_block(b, BS)

            await asyncio.gather(*(reader(hi, k, 60) for k in range(3)),
                                 *(reader(lo, 100 + k, 30) for k in range(16)))
        assert taken["hi"] > 0  # C staged the large class's reads while the small one waited
        assert taken["lo"] == 0  # never a class with its own requests queued

    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk=True, io_in_disk_goals=10 / 75,
        io_wakeup_budget=0)


def test_the_demand_following_option_reaches_the_queue(run, scratch):
    async def main():
        r = ioengine.get_reactor()
        q = r.disks.for_device(os.stat(scratch).st_dev, r.loop.time())
        return r.disks.config.share_follow_demand, q.config.share_follow_demand

    assert run(main(), io_properties=PROPS.format(mp=scratch)) == (0.6, 0.6)
    assert run(main(), io_properties=PROPS.format(mp=scratch), io_share_follow_demand=1.0) == (1.0, 1.0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="io_share_follow_demand must be a number in"):
            ioengine.ReactorOptions(io_share_follow_demand=bad)


def test_a_request_a_completion_woke_its_task_for_is_counted_fed(run, scratch):
    """IoClassState.fed, what tells the scheduler a closed loop from a paced one: a request
    issued by a task that its last read's completion resumed is fed; one issued after a sleep
    (the task woken by a timer) is not. Both classes on the C path and, held, through the queue."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    closed, paced = ioengine.IoClass("fed_closed", 400), ioengine.IoClass("fed_paced", 100)
    tasks, reads = 4, 40

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())

            async def reader(cls, seed, pause):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    if pause:
                        await asyncio.sleep(pause)
                    b = rnd.randrange(BLOCKS)
                    assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                    assert bytes(buf) == pattern_block(b, BS)

            await asyncio.gather(*(reader(closed, k, 0) for k in range(tasks)),
                                 *(reader(paced, 100 + k, 0.0002) for k in range(tasks)))
            r.settle_grants()
            states = r.disks.states_of(queue)
            sc, sp = states[closed], states[paced]
            assert sc.ops[READ] == sp.ops[READ] == tasks * reads
            assert sc.fed[0] == tasks * (reads - 1)  # all but each task's first
            assert sp.fed[0] == 0

    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk=True, io_in_disk_goals=10 / 75)


async def _large_next_to_held_small(r, path, hi, lo, seen: dict[str, int]) -> None:
    """6 tasks of the large class next to 16 of the small one (held over its part: counted in
    seen["lo_held"]), every read checked, the books balanced at the end."""
    async with await ioengine.open_file_dma(path, F.RO) as f:
        queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())

        async def reader(cls, seed, reads):
            rnd = random.Random(seed)
            buf = f.allocate_buffer(BS)
            for _ in range(reads):
                b = rnd.randrange(BLOCKS)
                assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                assert bytes(buf) == pattern_block(b, BS)
                if r.disks.states_of(queue)[lo].nr_queued:
                    seen["lo_held"] += 1

        await asyncio.gather(*(reader(hi, k, 60) for k in range(6)),
                             *(reader(lo, 100 + k, 30) for k in range(16)))
        await r.drain()
        r.settle_grants()
        states = r.disks.states_of(queue)
        assert r.inflight == 0 and queue.in_disk == 0
        assert states[hi].ops[READ] == 6 * 60 and states[lo].ops[READ] == 16 * 30


def test_a_class_within_its_part_submits_mid_turn_without_python(run, scratch, backend):
    """While the small class waits over its part, the large one goes on under its grant and its
    full batches go to the kernel mid-turn from C (io_uring): no Python submission per batch
    (they cost it ~a third of its reads next to a throttled class: `scripts/compaction.py`). The
    waiting class's dispatch is the turn's flush's; every read still comes back right."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    hi, lo = ioengine.IoClass("sidm_hi", 400), ioengine.IoClass("sidm_lo", 100)

    async def main():
        r = ioengine.get_reactor()
        seen = {"inline_while_held": 0, "lo_held": 0}
        submit_now = r._submit_now

        def counting(inline: bool = False) -> None:
            # C's mid-turn submission calls Python through Reactor._submit_inline (a grant
            # reopened in submit_rw, Python's own path, submits from there too: not counted)
            p = r._path
            if inline and p.sched_waiting and p.grant is not None \
                    and sys._getframe(1).f_code.co_name == "_submit_inline":
                seen["inline_while_held"] += 1
            submit_now(inline)

        r._submit_now = counting
        await _large_next_to_held_small(r, path, hi, lo, seen)
        assert seen["lo_held"] > 0
        if backend == "io_uring":
            assert seen["inline_while_held"] == 0
        # (the other backends have no ring for C to submit through: Python's flush() does it)

    capacity_goals = 10 / 75
    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk=True, io_in_disk_goals=capacity_goals,
        io_wakeup_budget=0, submit_batch=2)


def test_a_class_within_its_part_is_completed_in_the_turn(run, scratch, backend, monkeypatch):
    """While the small class waits over its part, the large one's completions (batches with no
    unit of the queue in them: what the mid-turn submissions and the reactor's own submission
    collect) are completed in C, not by the reactor's general path; the small class's units
    still go there (the queue books them), and every read is right. (A batch the eventfd's reap
    hands back whole, because what waits for the flush holds a unit, is the general path's.)"""
    from ioengine._iopath import UNIT_FLAG
    from ioengine.reactor import Reactor

    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    hi, lo = ioengine.IoClass("sidt_hi", 400), ioengine.IoClass("sidt_lo", 100)
    seen = {"general_without_units": 0, "general_with_units": 0, "lo_held": 0}
    complete = Reactor._complete

    def counting(self: Reactor, uds: list[int], results: list[int]) -> None:
        if self._path.sched_waiting and uds and sys._getframe(1).f_code.co_name in ("_flush", "_submit_now"):
            key = "general_with_units" if any(u & UNIT_FLAG for u in uds) else "general_without_units"
            seen[key] += 1
        complete(self, uds, results)

    monkeypatch.setattr(Reactor, "_complete", counting)

    async def main():
        r = ioengine.get_reactor()
        await _large_next_to_held_small(r, path, hi, lo, seen)

    run(main(), io_properties=PROPS.format(mp=scratch), io_share_in_disk=True, io_in_disk_goals=10 / 75,
        io_wakeup_budget=0, submit_batch=2)
    assert seen["lo_held"] > 0
    if backend == "io_uring":
        assert seen["general_without_units"] <= 2



def test_a_class_at_its_part_goes_on_in_c_as_its_reads_complete(run, scratch, backend, monkeypatch):
    """The large class fills its own part of the disk next to a small class of 128 KiB reads
    held over its part (the split bound follows the large class's demand), as foreground reads
    do next to a compaction. Each of its completions gives room back that its open grant takes
    again at once (IoQueue.refill_grant): its next reads stay on the C path rather than
    reopening a grant through Python (Reactor.submit_rw, tens of µs a time next to a compaction:
    `scripts/compaction.py`; here ~0.055 per read before on io_uring, 0.01-0.03 after; 0.2-0.25
    / 0.03-0.1 with the threads backend). Every read comes back right and the books balance."""
    from ioengine.reactor import Reactor

    path = scratch / "data"
    blocks = 8192
    write_pattern_file(path, blocks, BS)
    hi, lo = ioengine.IoClass("sidr_hi", 1000), ioengine.IoClass("sidr_lo", 100)
    seen = {"python": 0, "lo_held": 0}
    submit_rw = Reactor.submit_rw

    def counting(self: Reactor, *args, **kw):
        if self._path.sched_waiting and args[11] is hi:  # (io_class)
            seen["python"] += 1
        return submit_rw(self, *args, **kw)

    monkeypatch.setattr(Reactor, "submit_rw", counting)
    tasks, reads = 24, 200

    async def main():
        r = ioengine.get_reactor()
        stop = False
        async with await ioengine.open_file_dma(path, F.RO) as f:
            queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())

            async def reader(seed):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(BS)
                for _ in range(reads):
                    b = rnd.randrange(blocks)
                    assert await f.dma_read(b * BS, buf, io_class=hi) == BS
                    assert bytes(buf) == pattern_block(b, BS)
                    if r.disks.states_of(queue)[lo].nr_queued:
                        seen["lo_held"] += 1

            async def large(k):
                buf = f.allocate_buffer(32 * BS)
                pos = k * 32
                while not stop:
                    assert await f.dma_read(pos * BS, buf, io_class=lo) == 32 * BS
                    assert bytes(buf[:BS]) == pattern_block(pos, BS)
                    pos = (pos + 64) % blocks

            bg = [asyncio.ensure_future(large(k)) for k in range(2)]
            await asyncio.gather(*(reader(k) for k in range(tasks)))
            stop = True
            await asyncio.gather(*bg)
        await r.drain()
        r.settle_grants()
        states = r.disks.states_of(queue)
        assert r.inflight == 0 and queue.in_disk == 0
        assert states[hi].ops[READ] == tasks * reads

    run(main(), io_properties=PROPS.format(mp=scratch))
    assert seen["lo_held"] > tasks * reads // 4
    # (linux-aio, without a ring for C to submit through, keeps more of Python's path, and the
    # other backends more of it under load: 0.05-0.1 per read in a full run, 0.2-0.25 before)
    assert seen["python"] <= tasks * reads // (30 if backend == "io_uring" else 6), seen
