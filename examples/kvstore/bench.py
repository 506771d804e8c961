"""The example store on ioengine against the same store on plain Python files.

The plain store has the same records, index and flush points, written with ``os.write`` +
``os.fsync`` and read with ``os.pread`` after ``posix_fadvise(POSIX_FADV_RANDOM)``. Two figures:

- puts/s with a flush every 10 puts (a fresh store each round);
- gets/s from 32 tasks over a store larger than what the gets touch, cold cache: the page
  cache is dropped before each gets phase (``echo 3 > /proc/sys/vm/drop_caches``, as root).
  The plain store's gets are ``os.pread`` in the task (what asyncio code does without a
  thread pool); a second plain row runs them through ``asyncio.to_thread`` (one thread per task).

Rounds alternate ioengine / plain (A B A B …); medians, ratios to plain.

    python examples/kvstore/bench.py [--rounds 3] [--puts 10000] [--records 100000] [--value 1000]
                                     [--gets 20000] [--tasks 32] [--dir .scratch/kvbench] [--no-prezero]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import time
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``examples.kvstore`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import ioengine  # noqa: E402
from examples.kvstore.store import (  # noqa: E402
    HEADER,
    TOMBSTONE,
    KVStore,
    StoreOptions,
    encode,
    record_length,
)


class PlainStore:
    """The same log format and index on plain files (one log: the bench never rotates)."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "00000001.log")
        self.index: dict[bytes, tuple[int, int]] = {}
        self.end = 0
        if os.path.exists(self.path):
            self._replay()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.rfd = os.open(self.path, os.O_RDONLY)

    def _replay(self) -> None:
        with open(self.path, "rb") as fh:
            data = fh.read()
        pos = 0
        while pos + HEADER.size <= len(data):
            crc, klen, vlen = HEADER.unpack_from(data, pos)
            n = record_length(klen, vlen)
            if klen == 0 or pos + n > len(data) or zlib.crc32(data[pos + 4:pos + n]) != crc:
                break
            key = data[pos + HEADER.size:pos + HEADER.size + klen]
            if vlen == TOMBSTONE:
                self.index.pop(key, None)
            else:
                self.index[key] = (pos, n)
            pos += n
        self.end = pos

    def advise_random(self) -> None:
        os.posix_fadvise(self.rfd, 0, 0, os.POSIX_FADV_RANDOM)

    async def put(self, key: bytes, value: bytes) -> None:
        rec = encode(key, value)
        os.write(self.fd, rec)
        self.index[key] = (self.end, len(rec))
        self.end += len(rec)

    async def flush(self) -> None:
        os.fsync(self.fd)

    def _get(self, key: bytes) -> bytes | None:
        loc = self.index.get(key)
        if loc is None:
            return None
        pos, n = loc
        rec = os.pread(self.rfd, n, pos)
        crc, klen, _ = HEADER.unpack_from(rec)
        if zlib.crc32(memoryview(rec)[4:]) != crc or rec[HEADER.size:HEADER.size + klen] != key:
            raise RuntimeError(f"bad record for {key!r}")
        return rec[HEADER.size + klen:]

    async def get(self, key: bytes) -> bytes | None:
        return self._get(key)

    async def get_threaded(self, key: bytes) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def close(self) -> None:
        os.close(self.fd)
        os.close(self.rfd)


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def key_of(i: int) -> bytes:
    return b"key-%08d" % i


async def _puts(store: KVStore | PlainStore, n: int, value: bytes) -> float:
    t = time.perf_counter()
    for i in range(n):
        await store.put(key_of(i), value)
        if i % 10 == 9:
            await store.flush()
    await store.flush()
    return n / (time.perf_counter() - t)


async def _gets(get: Callable[[bytes], Awaitable[bytes | None]], keys: list[bytes], tasks: int,
                value_len: int) -> float:
    per = [keys[i::tasks] for i in range(tasks)]

    async def worker(ks: list[bytes]) -> None:
        for k in ks:
            v = await get(k)
            if v is None or len(v) != value_len:
                raise RuntimeError(f"get({k!r}) returned {None if v is None else len(v)} bytes")

    t = time.perf_counter()
    await asyncio.gather(*(worker(ks) for ks in per))
    return len(keys) / (time.perf_counter() - t)


#: The ioengine store's options (--no-prezero turns its log preparation off).
STORE = StoreOptions()


async def ioengine_puts(d: str, n: int, value: bytes) -> float:
    shutil.rmtree(d, ignore_errors=True)
    store = await KVStore.open(d, STORE)
    try:
        return await _puts(store, n, value)
    finally:
        await store.close()


def plain_puts(d: str, n: int, value: bytes) -> float:
    shutil.rmtree(d, ignore_errors=True)
    store = PlainStore(d)
    try:
        return asyncio.run(_puts(store, n, value))
    finally:
        asyncio.run(store.close())


async def ioengine_build(d: str, n: int, value_len: int) -> None:
    store = await KVStore.open(d, STORE)
    rng = random.Random(1)
    for i in range(n):
        await store.put(key_of(i), rng.randbytes(value_len))
    await store.close()


async def ioengine_gets(d: str, keys: list[bytes], tasks: int, value_len: int, cold: bool) -> float:
    store = await KVStore.open(d, STORE)  # the replay reads the log; O_DIRECT: nothing stays cached
    try:
        if cold:
            drop_caches()
        return await _gets(store.get, keys, tasks, value_len)
    finally:
        await store.close()


def plain_build(d: str, n: int, value_len: int) -> None:
    store = PlainStore(d)
    rng = random.Random(1)

    async def fill() -> None:
        for i in range(n):
            await store.put(key_of(i), rng.randbytes(value_len))
        await store.flush()
        await store.close()

    asyncio.run(fill())


def plain_gets(d: str, keys: list[bytes], tasks: int, value_len: int, cold: bool, threaded: bool) -> float:
    store = PlainStore(d)  # its replay reads the log through the page cache: dropped below
    try:
        if cold:
            drop_caches()
        store.advise_random()
        return asyncio.run(_plain_gets(store, keys, tasks, value_len, threaded))
    finally:
        asyncio.run(store.close())


async def _plain_gets(store: PlainStore, keys: list[bytes], tasks: int, value_len: int, threaded: bool) -> float:
    if threaded:  # one thread per task (the default executor has min(32, CPUs + 4))
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(tasks))
        return await _gets(store.get_threaded, keys, tasks, value_len)
    return await _gets(store.get, keys, tasks, value_len)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--puts", type=int, default=10000)
    ap.add_argument("--records", type=int, default=100000, help="records in the store the gets read")
    ap.add_argument("--value", type=int, default=1000, help="value size in bytes")
    ap.add_argument("--gets", type=int, default=20000)
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--dir", default=".scratch/kvbench")
    ap.add_argument("--no-prezero", action="store_true",
                    help="the ioengine store's logs are not written full of zeros first")
    a = ap.parse_args()
    global STORE
    STORE = StoreOptions(prezero=not a.no_prezero)
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    cold = drop_caches()
    if not cold:
        print("note: cannot drop the page cache (not root): the plain gets run warm", file=sys.stderr)
    ioe_data, plain_data = str(base / "ioe-data"), str(base / "plain-data")
    for d in (ioe_data, plain_data):
        shutil.rmtree(d, ignore_errors=True)
    ioengine.run(ioengine_build(ioe_data, a.records, a.value))
    plain_build(plain_data, a.records, a.value)
    rng = random.Random(2)
    keys = [key_of(rng.randrange(a.records)) for _ in range(a.gets)]
    value = random.Random(3).randbytes(a.value)
    rows: dict[str, list[float]] = {k: [] for k in ("puts ioengine", "puts plain", "gets ioengine", "gets plain",
                                                     "gets plain+threads")}
    for r in range(a.rounds):
        res = {
            "puts ioengine": ioengine.run(ioengine_puts(str(base / "ioe-puts"), a.puts, value)),
            "puts plain": plain_puts(str(base / "plain-puts"), a.puts, value),
            "gets ioengine": ioengine.run(ioengine_gets(ioe_data, keys, a.tasks, a.value, cold)),
            "gets plain": plain_gets(plain_data, keys, a.tasks, a.value, cold, False),
            "gets plain+threads": plain_gets(plain_data, keys, a.tasks, a.value, cold, True),
        }
        for k, v in res.items():
            rows[k].append(v)
        print(f"round {r + 1} (load {os.getloadavg()[0]:.2f}): " + ", ".join(f"{k} {v:,.0f}/s" for k, v in res.items())
              + f" | puts {res['puts ioengine'] / res['puts plain']:.2f}x,"
              f" gets {res['gets ioengine'] / res['gets plain']:.2f}x"
              f" ({res['gets ioengine'] / res['gets plain+threads']:.2f}x threads)", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"medians ({a.rounds} rounds, {a.puts} puts of {a.value} B flushed every 10; {a.gets} gets from {a.tasks} "
          f"tasks over {a.records} records, {'cold' if cold else 'warm'} cache):")
    def ratio(a: str, b: str) -> str:  # of the medians, and the median of the rounds' ratios
        per_round = statistics.median(x / y for x, y in zip(rows[a], rows[b]))
        return f"{med[a] / med[b]:.2f}x (per round: median {per_round:.2f}x)"

    print(f"  puts/s: ioengine {med['puts ioengine']:,.0f}, plain {med['puts plain']:,.0f}: "
          f"{ratio('puts ioengine', 'puts plain')}")
    print(f"  gets/s: ioengine {med['gets ioengine']:,.0f}, plain {med['gets plain']:,.0f}: "
          f"{ratio('gets ioengine', 'gets plain')}; plain through {a.tasks} threads "
          f"{med['gets plain+threads']:,.0f}: {ratio('gets ioengine', 'gets plain+threads')}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
