"""Backend selection (explicit, auto, fallback with logged reasons), the reactor on a plain asyncio
loop, the reactor options as CLI flags."""
from __future__ import annotations

import argparse
import asyncio
import collections
import errno
import logging
import os
import select
import threading
from array import array

import pytest

import ioengine
from ioengine import OpenFlags as F

from foundation_util import pattern_block, write_pattern_file

IO_URING_MAX_ENTRIES = 32768  # io_uring_setup refuses more with EINVAL


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _too_many_entries() -> int:
    """A ring size both io_uring (> 32768: EINVAL) and linux-aio (> fs.aio-max-nr: EAGAIN) refuse."""
    aio_max = _read_int("/proc/sys/fs/aio-max-nr") or 65536
    return max(100_000, aio_max + 1, IO_URING_MAX_ENTRIES + 1)


def _backend_name(**options) -> str:
    async def main():
        return ioengine.get_reactor().backend.name

    return ioengine.run(main(), **options)


def test_requested_backend_is_used(backend, scratch):
    path = scratch / "f"
    write_pattern_file(path, 2, 4096)

    async def main():
        r = ioengine.get_reactor()
        assert r.backend.name == backend
        assert backend.split("-")[0] in repr(r) or backend in r.backend.describe()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            got = await f.dma_read_exactly(4096, 4096)
            assert bytes(got) == pattern_block(1, 4096)
        return r

    r = ioengine.run(main(), backend=backend)
    assert r.closed  # run() closes its reactor


def test_auto_picks_io_uring_here():
    if _read_int("/proc/sys/kernel/io_uring_disabled") not in (0, None):
        pytest.skip("io_uring is disabled by sysctl on this host")
    assert _backend_name(backend="auto") == "io_uring"
    assert _backend_name() == "io_uring"  # auto is the default


def test_auto_falls_back_and_logs_why(caplog):
    entries = _too_many_entries()
    with caplog.at_level(logging.INFO, logger="ioengine"):
        name = _backend_name(backend="auto", ring_entries=entries)
    assert name == "threads"
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "io_uring" in text and "EINVAL" in text, text
    assert "linux-aio" in text and ("EAGAIN" in text or "aio-max-nr" in text), text
    assert "thread" in text


def test_explicit_backend_that_cannot_start_raises():
    entries = _too_many_entries()

    async def main():
        return 0

    coro = main()
    with pytest.raises(ioengine.BackendUnavailableError) as ei:
        ioengine.run(coro, backend="io_uring", ring_entries=entries)
    assert isinstance(ei.value, OSError)
    assert ei.value.errno == errno.EINVAL
    assert "io_uring" in str(ei.value) and "EINVAL" in str(ei.value)
    with pytest.raises(ioengine.BackendUnavailableError) as ei:
        ioengine.run(coro, backend="linux-aio", ring_entries=entries)
    assert "linux-aio" in str(ei.value)
    assert ei.value.errno in (errno.EAGAIN, errno.EINVAL)
    assert "aio-max-nr" in str(ei.value) or "EINVAL" in str(ei.value)
    coro.close()
    # nothing was left behind: the next reactor starts normally
    assert _backend_name(backend="io_uring") == "io_uring"


@pytest.mark.root
def test_io_uring_disabled_sysctl_falls_back_to_linux_aio(caplog):
    sysctl = "/proc/sys/kernel/io_uring_disabled"
    if os.geteuid() != 0:
        pytest.skip("needs root to set kernel.io_uring_disabled")
    old = _read_int(sysctl)
    if old is None:
        pytest.skip("this kernel has no kernel.io_uring_disabled sysctl (< 6.6)")
    if not os.access(sysctl, os.W_OK):
        pytest.skip(f"{sysctl} is not writable here")
    try:
        with open(sysctl, "w") as fh:
            fh.write("2")
    except OSError as e:
        pytest.skip(f"cannot write {sysctl}: {e}")

    def restore() -> None:
        with open(sysctl, "w") as fh:
            fh.write(str(old))

    async def main():
        restore()  # keep the window where io_uring is off for the whole host as short as possible
        return ioengine.get_reactor().backend.name

    try:
        with caplog.at_level(logging.INFO, logger="ioengine"):
            name = ioengine.run(main(), backend="auto")
    finally:
        restore()
    assert _read_int(sysctl) == old
    assert name == "linux-aio"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "EPERM" in text and "io_uring_disabled" in text, text


def test_reactor_attaches_to_any_running_loop(scratch):
    """ioengine.run() is a convenience: a plain asyncio.run() gets a reactor on first use, built
    from ioengine.configure()'s options."""
    path = scratch / "f"
    write_pattern_file(path, 2, 4096)

    async def main():
        r = ioengine.get_reactor()
        assert ioengine.get_reactor() is r  # one per thread (and loop)
        async with await ioengine.open_file_dma(path, F.RO) as f:
            got = await f.dma_read_exactly(0, 4096)
            assert bytes(got) == pattern_block(0, 4096)
        name = r.backend.name
        await r.close()
        return name

    ioengine.configure(backend="threads", threads=2)
    try:
        assert asyncio.run(main()) == "threads"
    finally:
        ioengine.configure()
    assert asyncio.run(main()) != "threads" or _read_int("/proc/sys/kernel/io_uring_disabled")


def test_reactor_options_cli_round_trip():
    parser = ioengine.add_reactor_arguments(argparse.ArgumentParser())
    assert isinstance(parser, argparse.ArgumentParser)
    ns = parser.parse_args(["--reactor-backend", "threads", "--ring-entries", "64"])
    opts = ioengine.reactor_options_from_args(ns)
    assert isinstance(opts, ioengine.ReactorOptions)
    assert opts == ioengine.ReactorOptions(backend="threads", ring_entries=64)
    assert opts.backend == "threads" and opts.ring_entries == 64
    # defaults come from the dataclass, named once
    defaults = ioengine.reactor_options_from_args(parser.parse_args([]))
    assert defaults == ioengine.ReactorOptions()
    # every field is a flag, and flags round-trip through the dataclass
    ns = parser.parse_args(["--reactor-backend", "linux-aio", "--threads", "3", "--no-ring-taskrun-flags"])
    opts = ioengine.reactor_options_from_args(ns)
    assert (opts.backend, opts.threads, opts.ring_taskrun_flags) == ("linux-aio", 3, False)
    assert opts.replace(ring_entries=32).ring_entries == 32
    # what the parser produces is what ioengine.run accepts
    import dataclasses

    async def main():
        return ioengine.get_reactor().backend.name, ioengine.get_reactor().options

    name, used = ioengine.run(main(), **dataclasses.asdict(opts))
    assert name == "linux-aio" and used == opts
    with pytest.raises(SystemExit):
        parser.parse_args(["--reactor-backend", "bogus"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--ring-entries", "many"])


def test_reactor_backlog_beyond_ring_capacity(run, scratch):
    """More requests than ring entries: the reactor keeps the excess and submits it as room frees."""
    path = scratch / "f"
    write_pattern_file(path, 64, 4096)

    async def main():
        async with await ioengine.open_file_dma(path, F.RO) as f:
            bufs = [f.allocate_buffer(4096) for _ in range(300)]
            res = await asyncio.gather(*(f.dma_read((i % 64) * 4096, b) for i, b in enumerate(bufs)))
            assert res == [4096] * 300
            assert all(bytes(b) == pattern_block(i % 64, 4096) for i, b in enumerate(bufs))

    run(main(), ring_entries=4)


def test_threads_backend_never_loses_a_wakeup(scratch):
    """White-box: forces the interleaving (two completions appended before either worker checks) with
    a barrier inside the completion deque. With a correct backend the eventfd is readable while
    completions wait. (Reproduced black-box too: sys.setswitchinterval(1e-6) + batches of 64 reads
    hang within a few hundred batches.)"""
    from ioengine.backends import threads as threads_mod
    from ioengine.backends.base import OP_READ

    backend = threads_mod.ThreadsBackend(8, 2)
    if not isinstance(getattr(backend, "_done", None), collections.deque):
        backend.close()
        pytest.skip("ThreadsBackend internals changed; this white-box test needs updating")
    path = scratch / "f"
    write_pattern_file(path, 2, 4096)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    barrier = threading.Barrier(2, timeout=5)

    class BothAppendFirst(collections.deque):
        def append(self, item):
            super().append(item)
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

    bufs = [ioengine.allocate_aligned_buffer(4096) for _ in range(2)]
    try:
        backend._done = BothAppendFirst()
        recs = array("Q")
        for i, b in enumerate(bufs):
            recs.extend((OP_READ | (fd << 8), b.address, 4096, i * 4096, 100 + i))
        accepted, _, _ = backend.flush(recs)
        assert accepted == 2
        backend._pool.shutdown(wait=True)  # both reads done, both completions appended
        assert len(backend._done) == 2
        readable = select.select([backend.eventfd], [], [], 0)[0]
        assert readable, "two completions wait and the reactor's eventfd was never signalled"
    finally:
        backend.close()
        os.close(fd)


def test_run_waits_for_io_left_in_flight(run, scratch):
    """main() returning with reads still in flight: run() drains them before closing the ring, and
    the buffers (which the caller kept) hold the data."""
    path = scratch / "f"
    write_pattern_file(path, 64, 4096)
    bufs = [ioengine.allocate_aligned_buffer(4096) for _ in range(64)]

    async def main():
        f = await ioengine.open_file_dma(path, F.RO)
        for i, b in enumerate(bufs):
            asyncio.ensure_future(f.dma_read(i * 4096, b))
        await asyncio.sleep(0)  # the reads are issued; main returns without awaiting them
        return ioengine.get_reactor(), f.fileno()

    r, fd = run(main())
    os.close(fd)
    assert r.closed and r.inflight == 0
    assert all(bytes(b) == pattern_block(i, 4096) for i, b in enumerate(bufs))


def test_one_reactor_per_thread(backend, scratch):
    path = scratch / "f"
    write_pattern_file(path, 16, 4096)
    results: dict[int, object] = {}

    def worker(k: int) -> None:
        async def main():
            r = ioengine.get_reactor()
            async with await ioengine.open_file_dma(path, F.RO) as f:
                bufs = [f.allocate_buffer(4096) for _ in range(16)]
                await asyncio.gather(*(f.dma_read(i * 4096, b) for i, b in enumerate(bufs)))
                ok = all(bytes(b) == pattern_block(i, 4096) for i, b in enumerate(bufs))
            return id(r), threading.get_ident(), ok

        try:
            results[k] = ioengine.run(main(), backend=backend)
        except BaseException as e:  # reported below
            results[k] = e

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, res in results.items():
        assert not isinstance(res, BaseException), res
        assert res[2], f"thread {k} read wrong data"
    assert len({res[0] for res in results.values()}) == 3  # three distinct reactors
    assert len(results) == 3


def test_get_reactor_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        ioengine.get_reactor()


@pytest.mark.parametrize("taskrun", [True, False])
def test_io_uring_setup_flags(scratch, taskrun):
    """The ring works with and without the DEFER/COOP_TASKRUN set-up flags."""
    path = scratch / "f"
    write_pattern_file(path, 32, 4096)

    async def main():
        r = ioengine.get_reactor()
        desc = r.backend.describe()
        async with await ioengine.open_file_dma(path, F.RO) as f:
            bufs = [f.allocate_buffer(4096) for _ in range(32)]
            assert await asyncio.gather(*(f.dma_read(i * 4096, b) for i, b in enumerate(bufs))) == [4096] * 32
            assert all(bytes(b) == pattern_block(i, 4096) for i, b in enumerate(bufs))
        return desc

    desc = ioengine.run(main(), backend="io_uring", ring_taskrun_flags=taskrun)
    assert desc.startswith("io_uring")
    if not taskrun:
        assert "TASKRUN" not in desc
