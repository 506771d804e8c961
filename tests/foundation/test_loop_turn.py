"""The reactor's loop turn in C (IoPath.turn): while a turn is plain (the reactor open, nothing
queued in the disk scheduler, nothing held by the wake-up budget, no drain waiter, a batch of
one class, under the open grant or none), reaping, completing (with what the mid-turn submissions and the
turn's own submission collected), delivering and submitting are one C call; the rest goes to
the reactor's general path (_complete, _submit_now). Real I/O through io_uring (the
backend whose ring C reaps; the others never take the turn) on both loops: the same books as
the general path, and the general path really left alone while the turn is plain."""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

import ioengine
from ioengine import OpenFlags as F
from ioengine.reactor import Reactor

from foundation_util import pattern_block, write_pattern_file

BS = 4096
BLOCKS = 128

pytestmark = pytest.mark.parametrize("backend", ["io_uring"], indirect=True)


def _count_general_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the reactor's general completions and submissions (installed before the reactor
    exists, so IoPath.set_turn is handed the counting ones too)."""
    calls = {"complete": 0, "submit": 0}
    complete, submit = Reactor._complete, Reactor._submit_now

    def counting_complete(self: Reactor, uds: list[int], results: list[int]) -> None:
        calls["complete"] += 1
        complete(self, uds, results)

    def counting_submit(self: Reactor, inline: bool = False) -> None:
        calls["submit"] += 1
        submit(self, inline)

    monkeypatch.setattr(Reactor, "_complete", counting_complete)
    monkeypatch.setattr(Reactor, "_submit_now", counting_submit)
    return calls


async def _read_in_classes(f, classes: list[ioengine.IoClass], reads: int, tasks: int) -> None:
    """Each class in turn (never two at once): ``tasks`` tasks of ``reads`` checked random reads."""
    for cls in classes:
        async def one(k: int) -> None:
            rnd = random.Random(k)
            buf = f.allocate_buffer(BS)
            for _ in range(reads):
                b = rnd.randrange(BLOCKS)
                assert await f.dma_read(b * BS, buf, io_class=cls) == BS
                assert bytes(buf) == pattern_block(b, BS)

        await asyncio.gather(*(one(k) for k in range(tasks)))


def test_a_plain_run_stays_in_the_turn(run, scratch, monkeypatch):
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    calls = _count_general_calls(monkeypatch)
    reads = 300

    async def main():
        r = ioengine.get_reactor()
        assert r._turn is not None
        async with await ioengine.open_file_dma(path, F.RO) as f:
            flushes = r._path.flushes
            before = dict(calls)
            await _read_in_classes(f, [ioengine.IoClass("turn_plain", 100)], reads, 1)
            turns = r._path.flushes - flushes
            general = {k: calls[k] - before[k] for k in calls}
        return turns, general, r._path.gap_ns

    turns, general, gap = run(main())
    # one read in flight at a time: every read is a flush of its own, and the general
    # submission is never needed (the selector's reap, the eventfd's and the spinner's are the
    # turn's; what a submission finds completed goes to _complete, then to the next turn)
    assert turns >= reads
    assert general["submit"] <= 2
    assert gap > 0  # the completion rate is booked in C too


def test_reads_at_depth_stay_in_the_turn(run, scratch, monkeypatch):
    """Many tasks reading at once: their requests go to the kernel mid-turn (submit_batch) and
    those submissions collect completions, which the next turn's flush completes in C with the
    turn's own; the general completion is not needed, and every read is right."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    calls = _count_general_calls(monkeypatch)
    reads, tasks = 40, 16

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            before = dict(calls)
            await _read_in_classes(f, [ioengine.IoClass("turn_deep", 100)], reads, tasks)
            assert r.inflight == 0 and r._path.in_kernel == 0 and not r._deferred
        return {k: calls[k] - before[k] for k in calls}

    general = run(main(), submit_batch=2)
    assert general["complete"] <= 2  # (a class's first request takes the general path)
    assert general["submit"] <= 2


PROPS = ("disks:\n  - mountpoint: {mp}\n    read_iops: {iops}\n    read_bandwidth: 40000000000\n"
         "    write_iops: {iops}\n    write_bandwidth: 40000000000\n")


@pytest.mark.parametrize("iops", [10_000_000, 20_000])
def test_reads_through_a_calibrated_queue_stay_in_the_turn(run, scratch, monkeypatch, iops):
    """A disk with io_properties (a throttling queue): a lone class's reads go under direct
    grants, and their completions are completed by the turn too, the grants' books settled
    after its submissions (Reactor._settle_after_submit) rather than by the general path. With
    a rate the bucket never reaches, the general completion is not needed; with one it binds
    (the class waits in the queue part of the time), every read is still right. Either way the
    queue's books balance: every read counted, nothing left in the disk."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    calls = _count_general_calls(monkeypatch)
    reads, tasks = 40, 16
    cls = ioengine.IoClass(f"turn_cal_{iops}", 100)
    settles = {"n": 0}
    settle = Reactor._settle_after_submit

    def counting_settle(self: Reactor) -> None:
        settles["n"] += 1
        settle(self)

    monkeypatch.setattr(Reactor, "_settle_after_submit", counting_settle)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            queue = r.disks.for_device(os.stat(path).st_dev, r.loop.time())
            assert queue.throttling
            before = dict(calls)
            await _read_in_classes(f, [cls], reads, tasks)
            assert r.inflight == 0 and r._path.in_kernel == 0 and not r._deferred
            general = {k: calls[k] - before[k] for k in calls}
            r.settle_grants()
            st = r.disks.states_of(queue)[cls]
            assert st.ops[0] == reads * tasks and st.nr_executing == 0
            assert queue.in_disk == 0 and st.in_disk_cost == pytest.approx(0.0, abs=1e-9)
            assert st.consumption > 0
        return general

    general = run(main(), submit_batch=2, io_properties=PROPS.format(mp=scratch, iops=iops))
    assert settles["n"] > 0  # the grants' books, settled from the turn
    if iops > 1_000_000:
        assert general["complete"] <= 2  # (a class's first request takes the general path)
        assert general["submit"] <= 2


def test_the_spin_and_the_wake_up_deliver_without_a_flush_callback(run, scratch, monkeypatch):
    """One read at a time: the poller's reap (asyncio's selector; uvloop's spinner) and a
    sleep the eventfd ends complete, deliver and submit in their own call, so the woken task
    resumes and its next read goes out without the flush's loop callback (a Handle and a
    Python turn per read on asyncio's loop; `QD=1 scripts/icount.sh` counts it)."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    flushes = {"n": 0}
    flush = Reactor._flush

    def counting_flush(self: Reactor) -> None:
        flushes["n"] += 1
        flush(self)

    monkeypatch.setattr(Reactor, "_flush", counting_flush)  # before the reactor: C calls this one
    reads = 400

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            buf = f.allocate_buffer(BS)
            before = flushes["n"]
            for i in range(reads):
                b = (i * 37) % BLOCKS
                assert await f.dma_read(b * BS, buf) == BS and bytes(buf) == pattern_block(b, BS)
            return flushes["n"] - before

    flush_calls = run(main())
    assert flush_calls <= reads // 10, f"{flush_calls} flush callbacks for {reads} reads"


def test_a_poll_that_finds_nothing_changes_nothing(run, scratch):
    """IoPath.turn(1) that reaps nothing returns 0 and leaves every book as it was: the
    poller takes 0 for "nothing was scheduled" and goes on waiting, so a callback queued
    under it (e.g. the flush for what a submission found completed) would wait with it. Large
    writes, each submitted at once from the woken task (submit_alone_bytes), with a far timer
    so that the selector waits with a timeout: the pattern that found it."""
    path = scratch / "data"
    size = 64 << 10

    async def main():
        r = ioengine.get_reactor()
        seen: list[tuple] = []
        turn = r._turn

        def watching_turn(reap: int, wq):
            p = r._path
            before = (p.in_kernel, p.staged, p.flush_scheduled, p.inflight)
            got = turn(reap, wq)
            if reap == 1 and got == 0:
                seen.append((before, (p.in_kernel, p.staged, p.flush_scheduled, p.inflight)))
            return got

        r._turn = watching_turn
        far = r.loop.call_later(3600, lambda: None)
        try:
            async with await ioengine.open_file_dma(path, F.RW | F.CREATE) as f:
                for i in range(32):
                    b = f.allocate_buffer(size)
                    b[:] = bytes([i + 1]) * size
                    assert await asyncio.wait_for(f.dma_write(i * size, b), 60) == size
                    b.release()
                for i in range(32):
                    b = f.allocate_buffer(size)
                    assert await asyncio.wait_for(f.dma_read(i * size, b), 60) == size
                    assert bytes(b) == bytes([i + 1]) * size
                    b.release()
        finally:
            far.cancel()
        return seen

    seen = run(main(), idle_poll_time_us=200)
    changed = [(a, b) for a, b in seen if a != b]
    assert not changed, f"{len(changed)} empty polls changed the books, e.g. {changed[0]}"


def test_a_drain_waiter_is_woken_while_reads_go_on(run, scratch):
    """A task waiting in drain_owner() while other tasks keep reading: the completions that end
    its owner's requests wake it, whichever path completes them (the turn leaves a batch to
    the general path while a waiter is there)."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f, \
                await ioengine.open_file_dma(path, F.RO) as g:
            going = True

            async def reader(k: int) -> None:
                buf = g.allocate_buffer(BS)
                rnd = random.Random(k)
                while going:
                    b = rnd.randrange(BLOCKS)
                    assert await g.dma_read(b * BS, buf) == BS and bytes(buf) == pattern_block(b, BS)

            readers = [asyncio.ensure_future(reader(k)) for k in range(8)]
            for _ in range(30):
                tasks = [asyncio.ensure_future(f.dma_read(b * BS, f.allocate_buffer(BS))) for b in range(8)]
                await asyncio.sleep(0)
                await asyncio.wait_for(r.drain_owner(f), 10)
                assert not r._path.owns(f)
                assert await asyncio.gather(*tasks) == [BS] * 8
            going = False
            await asyncio.gather(*readers)
            await asyncio.wait_for(r.drain(), 10)
            assert r.inflight == 0

    run(main())


def test_the_turn_books_what_the_general_path_books(run, scratch):
    """Classes one after another (no competition: every wake-up goes at once): each class's
    requests, bytes and wake-ups (iosched.WakeupQueue's virtual time) are the same whether the
    turn is taken or the reactor is made to take its general path."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)
    classes = [ioengine.IoClass("turn_a", 300), ioengine.IoClass("turn_b", 100)]
    reads, tasks = 40, 8

    async def main(turn: bool):
        r = ioengine.get_reactor()
        if not turn:
            r._turn = None
        async with await ioengine.open_file_dma(path, F.RO) as f:
            await _read_in_classes(f, classes, reads, tasks)
            assert r.inflight == 0
            r._path.sync_counters()
            states = {st.name: st for cls, st in f._qstates.items() if cls is not None}
            books = {}
            for c in classes:
                st = states[c.name]
                books[c.name] = (st.ops[0], st.bytes[0], round(r._wakeups._classes[st].vtime, 9))
        return books

    books = {turn: run(main(turn), io_wakeup_budget=4) for turn in (True, False)}
    assert books[True] == books[False]
    for c in classes:
        ops, nbytes, vtime = books[True][c.name]
        assert ops == reads * tasks and nbytes == reads * tasks * BS
        # every wake-up charged but a class's first (its state is made on the general path,
        # which does not mark its request with it)
        assert vtime == pytest.approx((reads * tasks - 1) / c.shares)


def test_a_cancelled_read_is_completed_by_the_turn_and_its_buffer_kept(run, scratch):
    """Awaiters cancelled while their reads are in the kernel: the turn completes the reads
    (the buffers, held by the requests, are the kernel's until then) and goes on."""
    path = scratch / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            for _ in range(20):
                tasks = [asyncio.ensure_future(f.dma_read(b * BS, f.allocate_buffer(BS))) for b in range(16)]
                await asyncio.sleep(0)  # submitted
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                buf = f.allocate_buffer(BS)
                assert await f.dma_read(5 * BS, buf) == BS and bytes(buf) == pattern_block(5, BS)
            await r.drain()
            assert r.inflight == 0

    run(main())


def test_a_callback_that_submits_while_the_turn_resolves_its_batch(run, scratch):
    """A completion callback that issues a read (submitted at once: submit_batch=1) while the
    turn resolves a batch: the submission's own reap must not overwrite the batch being resolved
    (it did, through the reap's scratch arrays: a request resolved twice, another never). On
    tmpfs the new read completes within its submission, so that reap always finds something."""
    from ioengine.backends.base import OP_READ

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else scratch
    d = Path(tempfile.mkdtemp(prefix="ioengine-turn-", dir=base))
    path = d / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            later: list[tuple[int, asyncio.Future[int], object]] = []

            def then_read(req: tuple, res: int) -> None:
                b = (req[4] // BS + 64) % BLOCKS
                buf = f.allocate_buffer(BS)
                later.append((b, f.read_future(b * BS, buf), buf))

            for _ in range(20):
                bufs = [f.allocate_buffer(BS) for _ in range(16)]
                futs = [r.submit(OP_READ, f._fd, buf.address, BS, b * BS, buf, "dma_read", f, on_done=then_read)
                        for b, buf in enumerate(bufs)]
                assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [BS] * 16
                for b, buf in enumerate(bufs):
                    assert bytes(buf) == pattern_block(b, BS)
                got = await asyncio.wait_for(asyncio.gather(*(fut for _, fut, _ in later)), 10)
                assert got == [BS] * len(later) and len(later) == 16
                for b, _, buf in later:
                    assert bytes(buf) == pattern_block(b, BS)
                later.clear()
            await r.drain()
            assert r.inflight == 0 and r._path.in_kernel == 0

    try:
        run(main(), submit_batch=1)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_woken_task_that_takes_the_ring_away_mid_turn(run, scratch):
    """A task the turn wakes puts a fault injector in (the ring goes: IoPath.set_ring(0)) and
    submits at once (submit_batch=1): those submissions, now through the injector's flush,
    collect every completion (on tmpfs a read completes within its submission) for the
    reactor's flush. The turn must see them when its delivery ends; it looked through IoPath's
    reference to the list, which set_ring(0) drops, and they waited forever (seen as a rare hang
    of tests/reliability's output-stream tests under load)."""
    from ioengine.testing import inject_faults, remove_faults

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else scratch
    d = Path(tempfile.mkdtemp(prefix="ioengine-turn-", dir=base))
    path = d / "data"
    write_pattern_file(path, BLOCKS, BS)

    async def main():
        r = ioengine.get_reactor()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            buf = f.allocate_buffer(BS)
            for i in range(10):
                assert r._turn is not None
                assert await f.dma_read(i * BS, buf) == BS  # resumed by the turn
                inject_faults(r)
                try:
                    bufs = [f.allocate_buffer(BS) for _ in range(4)]
                    futs = [f.read_future((i + k) * BS, b) for k, b in enumerate(bufs)]
                    r._submit_now(inline=True)  # the last one's completion collected too
                    assert await asyncio.wait_for(asyncio.gather(*futs), 10) == [BS] * 4
                finally:
                    remove_faults(r)
                for k, b in enumerate(bufs):
                    assert bytes(b) == pattern_block(i + k, BS)
            await r.drain()
            assert r.inflight == 0 and not r._deferred

    try:
        run(main(), submit_batch=1)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_complete_plain_refuses_what_is_not_a_batch(run):
    async def main():
        r = ioengine.get_reactor()
        with pytest.raises(TypeError, match="two lists of one length"):
            r._path.complete_plain([1], [], None)
        with pytest.raises(TypeError):
            r._path.complete_plain((1,), (0,), None)
        # an empty batch is plain: nothing to complete, nothing wrong
        assert r._path.complete_plain([], [], None) is True

    run(main())
