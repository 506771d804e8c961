"""The disk scheduler in the reactor, on the real disk: splitting, classes, shares, metrics."""
from __future__ import annotations

import asyncio
import os
import random

import pytest

import ioengine
from ioengine import OpenFlags


def _props(directory, read_iops=20000, bw="100M"):
    return (f"disks:\n  - mountpoint: {os.path.abspath(directory)}\n    read_iops: {read_iops}\n"
            f"    read_bandwidth: {bw}\n    write_iops: {read_iops}\n    write_bandwidth: {bw}\n")


def test_large_requests_are_split_and_reassembled(scratch):
    path = scratch / "f"

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE) as f:
            bufs = [f.allocate_buffer(1 << 20) for _ in range(4)]
            for i, b in enumerate(bufs):
                b[:] = bytes([i + 1]) * len(b)
            assert await f.dma_writev(0, bufs) == 4 << 20  # vectored: costed as one unit
            big = f.allocate_buffer(4 << 20)
            assert await f.dma_read(0, big) == 4 << 20  # larger than the bucket: split in parts
            for i in range(4):
                assert bytes(big[i << 20:(i << 20) + 4096]) == bytes([i + 1]) * 4096
        m = ioengine.metrics()[0]["disks"]
        (disk,) = [d for d in m.values() if d["queue"]["throttling"]]
        assert disk["classes"]["default"]["split_ops"] >= 1

    ioengine.run(body(), io_properties=_props(scratch))


def test_unthrottled_disk_with_a_full_ring_queues_in_fair_order(scratch):
    path = scratch / "f"
    path.write_bytes(os.urandom(1 << 20))

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            bufs = [[f.allocate_buffer(4096)] for _ in range(600)]  # more than the ring holds
            got = await asyncio.gather(*(f.dma_readv(4096 * (i % 256), b) for i, b in enumerate(bufs)))
            assert set(got) == {4096}
            assert ioengine.get_reactor().inflight == 0

    ioengine.run(body(), ring_entries=64)


def test_two_classes_share_the_disk_by_their_shares(scratch):
    path = scratch / "f"
    path.write_bytes(os.urandom(8 << 20))
    hi, lo = ioengine.IoClass("test-hi", 400), ioengine.IoClass("test-lo", 100)

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            stop = False
            counts = {"test-hi": 0, "test-lo": 0}

            async def worker(cls, seed):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(4096)
                with cls:  # the contextvar picks the class for everything below
                    while not stop:
                        await f.dma_read(rnd.randrange(2048) * 4096, buf)
                        counts[cls.name] += 1

            tasks = [asyncio.create_task(worker(c, i)) for i, c in enumerate([hi] * 64 + [lo] * 64)]
            await asyncio.sleep(0.5)
            stop = True
            await asyncio.gather(*tasks)
            text = ioengine.metrics_text()
        return counts, text

    counts, text = ioengine.run(body(), io_properties=_props(scratch))
    assert counts["test-lo"] > 0, "the class with fewer shares must still progress"
    # The calibration (20k IOPS) is far below the disk, so the scheduler decides who goes.
    assert counts["test-hi"] / counts["test-lo"] > 2.5, counts
    assert 'class="test-hi"' in text and "# TYPE ioengine_io_queue_ops_total counter" in text
    for line in text.splitlines():
        if not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            float(value)  # every sample is a number (NaN/Inf spelled the Prometheus way)


def test_io_class_validation_and_runtime_changes(scratch):
    import pytest

    with pytest.raises(ValueError):
        ioengine.IoClass("", 100)
    with pytest.raises(ValueError):
        ioengine.IoClass("x", 0)
    c = ioengine.IoClass("test-runtime", 100)
    path = scratch / "f"
    path.write_bytes(os.urandom(1 << 20))

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            buf = f.allocate_buffer(4096)
            await f.dma_read(0, buf, io_class=c)
            c.update_shares(300)
            c.update_iops(1000)
            c.rename("test-renamed")
            await f.dma_read(4096, buf, io_class=c)
            m = ioengine.metrics()[0]["disks"]
            classes = [d["classes"] for d in m.values() if "test-renamed" in d["classes"]][0]
            assert classes["test-renamed"]["shares"] == 300
            assert classes["test-renamed"]["iops_limit"] == 1000

    ioengine.run(body(), io_properties=_props(scratch))


def test_io_properties_file_round_trip_maps_the_file_to_its_disk(scratch, caplog):
    import pytest

    from iosched import DiskProperties, IoPropertiesError, load_io_properties, save_io_properties

    disk = DiskProperties((os.path.abspath(scratch), "/nonexistent-mountpoint"), 50000, 500e6, 40000, 400e6)
    props = scratch / "io_properties.yaml"
    save_io_properties([disk], props)
    assert load_io_properties(props)[0].read_iops == 50000  # what we write loads unchanged
    path = scratch / "f"
    path.write_bytes(os.urandom(1 << 16))

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            await f.dma_read(0, f.allocate_buffer(4096))
            return f._queue.properties

    got = ioengine.run(body(), io_properties_file=str(props))
    assert got is not None and got.read_iops == 50000
    assert "nonexistent-mountpoint" in caplog.text  # a mountpoint that cannot be used is said, not fatal

    bad = scratch / "bad.yaml"
    bad.write_text("disks:\n  - mountpoint: /\n    read_iops: lots\n")
    with pytest.raises(IoPropertiesError, match="read_iops"):
        ioengine.run(body(), io_properties_file=str(bad))


def test_a_lone_class_goes_straight_out_under_grants_and_the_books_balance(scratch, backend):
    """Nothing else waits: requests skip the queue (no queue delay) yet are all charged, also
    those whose awaiting task was cancelled, and the disk's books balance once all are in."""
    path = scratch / "f"
    path.write_bytes(os.urandom(4 << 20))
    n_reads = 600

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            r = ioengine.get_reactor()

            async def reader(seed):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(4096)
                for _ in range(n_reads // 20):
                    assert await f.dma_read(rnd.randrange(1024) * 4096, buf) == 4096

            await asyncio.gather(*(reader(i) for i in range(20)))
            victims = [asyncio.ensure_future(f.dma_read(i * 4096, f.allocate_buffer(4096))) for i in range(40)]
            await asyncio.sleep(0)
            for v in victims:
                v.cancel()
            await r.drain()
            (q,) = [q for q in r.disks.queues.values() if q.properties is not None]
            return ioengine.metrics()[0], q.in_disk

    m, in_disk = ioengine.run(body(), backend=backend, io_properties=_props(scratch, read_iops=1_000_000, bw="10G"))
    (disk,) = [d for d in m["disks"].values() if d["queue"]["throttling"]]
    cls = disk["classes"]["default"]
    assert cls["read_ops"] == n_reads + 40
    assert cls["total_queue_delay"] == 0.0  # none of them waited in the queue
    assert cls["consumption"] == pytest.approx((n_reads + 40) / 1e6)
    assert cls["disk_queue_length"] == 0 and in_disk == 0
    assert disk["queue"]["completed_cost"] == pytest.approx(disk["queue"]["dispatched_cost"])


def test_a_lone_class_keeps_the_c_path_across_settles(scratch, backend):
    """The open grant is settled every SETTLE_NS while its class keeps the disk busy; the next
    grant opens at the settle, so no request takes the Python path (Reactor.submit_rw) to open
    it: before, the first request after each settle did (about one in twenty at QD32)."""
    from ioengine.reactor import SETTLE_NS

    path = scratch / "f"
    path.write_bytes(os.urandom(4 << 20))

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            r = ioengine.get_reactor()
            slow = []
            submit_rw = r.submit_rw

            def counting(*args, **kw):
                slow.append(args[0])
                return submit_rw(*args, **kw)

            r.submit_rw = counting
            settled = []
            settle = r.settle_grants

            def counting_settle():
                settled.append(1)
                settle()

            r.settle_grants = counting_settle
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            done = [0]

            async def reader(seed):
                rnd = random.Random(seed)
                buf = f.allocate_buffer(4096)
                # long enough for several settles and reads, however fast or slow the host
                while len(settled) < 20 or loop.time() - t0 < 20 * SETTLE_NS / 1e9 or done[0] < 320:
                    assert await f.dma_read(rnd.randrange(1024) * 4096, buf) == 4096
                    done[0] += 1

            await asyncio.gather(*(reader(i) for i in range(32)))
            return slow, len(settled), ioengine.metrics()[0]

    slow, settles, m = ioengine.run(body(), backend=backend,
                                    io_properties=_props(scratch, read_iops=1_000_000, bw="10G"))
    (disk,) = [d for d in m["disks"].values() if d["queue"]["throttling"]]
    reads = disk["classes"]["default"]["read_ops"]
    assert settles >= 20 and reads > 100
    assert len(slow) <= 2, f"{len(slow)} of {reads} reads took the Python path over {settles} settles"
    assert disk["queue"]["completed_cost"] == pytest.approx(disk["queue"]["dispatched_cost"])


def test_a_throttled_lone_class_queues_what_the_tokens_do_not_cover(scratch, backend):
    """A calibration far below the disk: the grant runs out and the rest waits its turn."""
    path = scratch / "f"
    path.write_bytes(os.urandom(4 << 20))

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            bufs = [f.allocate_buffer(4096) for _ in range(64)]
            got = await asyncio.gather(*(f.dma_read(i * 4096, b) for i, b in enumerate(bufs)))
            assert got == [4096] * 64
            return ioengine.metrics()[0]

    m = ioengine.run(body(), backend=backend, io_properties=_props(scratch, read_iops=2000))
    (disk,) = [d for d in m["disks"].values() if d["queue"]["throttling"]]
    cls = disk["classes"]["default"]
    # 0.75 ms of a 2000 IOPS disk is one read: the bucket is raised to hold 4 (min_requests_in_bucket)
    assert cls["read_ops"] == 64
    assert cls["total_queue_delay"] > 0.0
    assert disk["queue"]["completed_cost"] == pytest.approx(disk["queue"]["dispatched_cost"])


def test_class_changes_while_a_grant_is_open_keep_the_books(scratch, backend):
    """Shares, limits and names change under a class that is dispatching under grants."""
    path = scratch / "f"
    path.write_bytes(os.urandom(4 << 20))
    c = ioengine.IoClass("test-grant-changes", 200)

    async def body():
        async with await ioengine.open_file_dma(path, OpenFlags.RO) as f:
            done = 0

            async def reader(seed):
                nonlocal done
                rnd = random.Random(seed)
                buf = f.allocate_buffer(4096)
                for _ in range(40):
                    assert await f.dma_read(rnd.randrange(1024) * 4096, buf, io_class=c) == 4096
                    done += 1

            tasks = [asyncio.create_task(reader(i)) for i in range(16)]
            for step in range(6):
                await asyncio.sleep(0)
                c.update_shares(100 + step)
                c.update_iops(50_000 if step % 2 else None)
            c.rename("test-grant-changed")
            await asyncio.gather(*tasks)
            await ioengine.get_reactor().drain()
            return done, ioengine.metrics()[0]

    done, m = ioengine.run(body(), backend=backend, io_properties=_props(scratch, read_iops=1_000_000, bw="10G"))
    (disk,) = [d for d in m["disks"].values() if d["queue"]["throttling"]]
    cls = disk["classes"]["test-grant-changed"]
    assert done == 16 * 40 and cls["read_ops"] == done
    assert cls["disk_queue_length"] == 0 and cls["queue_length"] == 0
    assert disk["queue"]["completed_cost"] == pytest.approx(disk["queue"]["dispatched_cost"])


@pytest.mark.parametrize("adaptive", [False, True])
def test_adaptive_in_disk_option_reaches_the_disk_queue(scratch, adaptive):
    """ReactorOptions.io_adaptive_in_disk turns iosched's knee on for the reactor's disk queues;
    two classes reading through it still get every byte right."""
    p = scratch / "f"
    p.write_bytes(bytes(range(256)) * 256)

    async def body():
        f = await ioengine.open_file_dma(p)
        hi, lo = ioengine.IoClass("hi", shares=400), ioengine.IoClass("lo", shares=100)
        got = await asyncio.gather(*(f.dma_read_exactly(i * 4096, 4096, io_class=(hi, lo)[i % 2]) for i in range(16)))
        assert all(bytes(g) == bytes(range(256)) * 16 for g in got)
        q = ioengine.get_reactor().disks.config
        await f.close()
        return q.adaptive_in_disk

    assert ioengine.run(body(), io_properties=_props(scratch), io_adaptive_in_disk=adaptive) is adaptive
