"""The example key-value store (examples/kvstore) on real files, on every backend and loop: puts,
gets, deletes, rotation, compaction, recovery from a torn or zero-padded tail, reopening."""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from examples.kvstore.store import CorruptRecord, KVStore, StoreOptions, encode  # noqa: E402

#: Small logs keep the tests fast (a new log is written full of zeros first).
SMALL = StoreOptions(max_log_size=1 << 20)


def _logs(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".log"))


def _value(i: int, gen: int = 0) -> bytes:
    return random.Random(i * 1000 + gen).randbytes(1 + (i * 37 + gen) % 700)


@pytest.mark.parametrize("prezero", [True, False])
def test_put_get_delete_reopen(run, scratch, prezero):
    d = scratch / "kv"
    opts = StoreOptions(max_log_size=1 << 20, prezero=prezero)

    async def body():
        async with await KVStore.open(str(d), opts) as kv:
            assert await kv.get(b"nope") is None
            for i in range(200):
                await kv.put(b"k%d" % i, _value(i))
            assert await kv.get(b"k7") == _value(7), "not flushed yet: served from memory"
            await kv.flush()
            for i in range(200):
                assert await kv.get(b"k%d" % i) == _value(i), "flushed: read from the log"
            await kv.put(b"k3", b"new")
            await kv.delete(b"k4")
            await kv.delete(b"never-there")
            assert await kv.get(b"k3") == b"new" and await kv.get(b"k4") is None
            await kv.flush()
            assert await kv.get(b"k3") == b"new" and await kv.get(b"k4") is None
            await kv.put(b"k5", b"")  # an empty value is a value, not a deletion
        async with await KVStore.open(str(d), opts) as kv:
            assert len(kv) == 199
            assert await kv.get(b"k3") == b"new" and await kv.get(b"k4") is None
            assert await kv.get(b"k5") == b""
            assert await kv.get(b"k150") == _value(150)
            await kv.put(b"after", b"reopen")  # appended after the old records
        async with await KVStore.open(str(d), opts) as kv:
            assert await kv.get(b"after") == b"reopen" and await kv.get(b"k150") == _value(150)
            assert kv.recovered_torn == 0

    run(body())
    assert sorted(os.listdir(d)) == ["00000001.log"], "closed: no log being prepared is left"


def test_rotation(run, scratch):
    d = scratch / "kv"
    opts = StoreOptions(max_log_size=16 * 1024, buffer_size=8192)

    async def body():
        async with await KVStore.open(str(d), opts) as kv:
            for i in range(300):
                await kv.put(b"key-%d" % i, _value(i))
                if i % 10 == 9:
                    await kv.flush()
            for i in range(300):
                assert await kv.get(b"key-%d" % i) == _value(i)
        logs = _logs(d)
        assert len(logs) > 5, logs
        for name in logs[:-1]:
            size = os.path.getsize(d / name)
            assert 16 * 1024 <= size < 16 * 1024 + 1000, f"{name}: a closed log is cut to its last record"
        async with await KVStore.open(str(d), opts) as kv:
            assert len(kv) == 300
            got = await asyncio.gather(*(kv.get(b"key-%d" % i) for i in range(300)))
            assert got == [_value(i) for i in range(300)]

    run(body())


def test_compaction(run, scratch):
    """Overwrites and deletes spread over many logs; compaction keeps only the live records (in a
    low-share io class) while gets and puts go on; the result survives a reopen."""
    d = scratch / "kv"
    opts = StoreOptions(max_log_size=8 * 1024, buffer_size=4096)

    async def body():
        async with await KVStore.open(str(d), opts) as kv:
            for gen in range(4):
                for i in range(60):
                    await kv.put(b"k%d" % i, _value(i, gen))
                await kv.flush()
            for i in range(0, 60, 3):
                await kv.delete(b"k%d" % i)
            await kv.flush()
            expect = {b"k%d" % i: (None if i % 3 == 0 else _value(i, 3)) for i in range(60)}
            before = _logs(d)

            async def reader():
                for _ in range(5):
                    for k, v in list(expect.items()):
                        assert await kv.get(k) == v

            async def writer():
                for i in range(60, 80):
                    await kv.put(b"k%d" % i, _value(i))
                    expect[b"k%d" % i] = _value(i)
                    await asyncio.sleep(0)

            compaction = asyncio.ensure_future(kv.compact())
            await asyncio.gather(reader(), writer())
            reclaimed = await compaction
            assert reclaimed > 0
            after = _logs(d)
            assert len(after) < len(before), (before, after)
            for k, v in expect.items():
                assert await kv.get(k) == v
            assert kv._compaction_class.shares == 100  # the low-share class compaction ran in
            await kv.flush()
        async with await KVStore.open(str(d), opts) as kv:
            for k, v in expect.items():
                assert await kv.get(k) == v
            assert await kv.compact() >= 0

    run(body())


def _snapshot(d: Path, to: Path) -> None:
    """What a crash right now would leave of the store's files (its durable part at least)."""
    shutil.copytree(d, to)


@pytest.mark.parametrize("prezero", [True, False])
@pytest.mark.parametrize("damage", ["cut mid-record", "zeros", "garbage", "cut in the header"])
def test_recovery_stops_at_the_first_bad_record(run, scratch, damage, prezero):
    """A crash leaves the active log with a torn record, or zeros past the last one (the stream
    runs with trim_on_flush=False), or garbage: recovery keeps every record before it, cuts the
    log there, and appending resumes in the right place."""
    d, crashed = scratch / "kv", scratch / "crashed"
    opts = StoreOptions(max_log_size=1 << 20, prezero=prezero)

    async def body():
        kv = await KVStore.open(str(d), opts)
        for i in range(50):
            await kv.put(b"k%d" % i, _value(i))
        await kv.flush()
        _snapshot(d, crashed)  # the store still open: its log holds zeros past the data
        await kv.close()
        log = crashed / "00000001.log"
        data = log.read_bytes()
        good = sum(len(encode(b"k%d" % i, _value(i))) for i in range(50))
        assert data[:good] == d.joinpath("00000001.log").read_bytes()
        assert not any(data[good:]), "past the last record: zeros only"
        last = len(encode(b"k49", _value(49)))
        if damage == "cut mid-record":
            data = data[:good - last // 2]
        elif damage == "cut in the header":
            data = data[:good - last + 5]
        elif damage == "zeros":
            data = data[:good] + bytes(10_000)
        else:
            data = data[:good - last] + b"\x01" * last + data[good:]
        log.write_bytes(data)
        survivors = 50 if damage == "zeros" else 49
        async with await KVStore.open(str(crashed), opts) as kv2:
            assert kv2.recovered_torn > 0
            assert len(kv2) == survivors
            for i in range(survivors):
                assert await kv2.get(b"k%d" % i) == _value(i)
            assert await kv2.get(b"k49") == (_value(49) if survivors == 50 else None)
            await kv2.put(b"after", b"crash")
        async with await KVStore.open(str(crashed), opts) as kv3:
            assert kv3.recovered_torn == 0
            assert await kv3.get(b"after") == b"crash"
            assert len(kv3) == survivors + 1

    run(body())


def test_get_checks_the_crc(run_default_kv, scratch):
    d = scratch / "kv"

    async def body():
        async with await KVStore.open(str(d), SMALL) as kv:
            await kv.put(b"a", b"x" * 100)
            await kv.put(b"b", b"y" * 100)
            await kv.flush()
            log = d / "00000001.log"
            with open(log, "r+b") as fh:  # flip one byte of b's value behind the store's back
                fh.seek(len(encode(b"a", b"x" * 100)) + 20)
                fh.write(b"Y")
                fh.flush()
                os.fsync(fh.fileno())
            assert await kv.get(b"a") == b"x" * 100
            with pytest.raises(CorruptRecord, match="crc"):
                await kv.get(b"b")

    run_default_kv(body())


@pytest.fixture
def run_default_kv():
    import ioengine

    return lambda coro: ioengine.run(coro)


def test_cancelled_gets_leave_the_others_right(run, scratch):
    """Gets cancelled while their reads are in the kernel: the buffers they read into are never
    handed to another get (the others, and later ones, return the right values)."""
    d = scratch / "kv"

    async def body():
        async with await KVStore.open(str(d), SMALL) as kv:
            for i in range(100):
                await kv.put(b"k%d" % i, _value(i))
            await kv.flush()
            for _ in range(3):
                tasks = [asyncio.ensure_future(kv.get(b"k%d" % i)) for i in range(100)]
                await asyncio.sleep(0)
                for t in tasks[::2]:
                    t.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                for i, r in enumerate(results):
                    if not isinstance(r, asyncio.CancelledError):
                        assert r == _value(i)
            got = await asyncio.gather(*(kv.get(b"k%d" % i) for i in range(100)))
            assert got == [_value(i) for i in range(100)]

    run(body())
