"""Output stream failures: a failing background write surfaces at the next call, the stream then
refuses further writes, close() raises and still closes the file; nothing is lost silently."""
from __future__ import annotations

import asyncio
import errno

import pytest

import ioengine
from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream

from streams_util import CREATE, payload, read_os

NO_PREALLOC = FileOutputStreamOptions(preallocation_size=0)


async def calls_after_failure(stream, calls):
    """Run ``calls`` (name, coroutine function) in order; return [(name, exception or None)]."""
    outcome = []
    for name, fn in calls:
        try:
            await fn()
            outcome.append((name, None))
        except OSError as e:  # ClosedFileError is a ValueError: it must not show up here
            outcome.append((name, e))
    return outcome


def assert_refuses_after_first_error(outcome, file):
    errors = [i for i, (_, e) in enumerate(outcome) if e is not None]
    assert errors, f"no call reported the failure: {outcome}"
    first = errors[0]
    later_ok = [name for name, e in outcome[first:] if e is None]
    assert not later_ok, f"after {outcome[first][0]} failed, these succeeded: {later_ok} ({outcome})"
    assert outcome[-1][0] == "close" and outcome[-1][1] is not None
    assert file.closed, "close() raised but must still close the file"


def test_failing_background_write_surfaces(run, scratch):
    """dma_write on a read-only fd fails (EBADF) in the background: flush raises, further writes
    raise, close raises and closes the file."""
    path = scratch / "f"
    path.write_bytes(b"")

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RO)
        stream = make_file_output_stream(f, NO_PREALLOC)
        await stream.write(bytes(131072))  # a full buffer: issued in the background
        outcome = await calls_after_failure(stream, [
            ("flush", stream.flush),
            ("write", lambda: stream.write(b"x")),
            ("flush", stream.flush),
            ("close", stream.close),
        ])
        assert_refuses_after_first_error(outcome, f)
        for _, e in outcome:
            assert e.errno == errno.EBADF, e
            assert str(path) in str(e) or e.filename == str(path), e
        with pytest.raises(ioengine.ClosedFileError):
            await stream.write(b"y")
        await stream.close()  # a second close is quiet

    run(body())


def test_failing_tail_write_surfaces_at_close(run, scratch):
    """Only a partial buffer: the failing write is close()'s tail write; close raises, file closed."""
    path = scratch / "f"
    path.write_bytes(b"")

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RO)
        stream = make_file_output_stream(f, NO_PREALLOC)
        await stream.write(b"hello")
        with pytest.raises(OSError) as ei:
            await stream.close()
        assert ei.value.errno == errno.EBADF
        assert f.closed

    run(body())


def test_failed_write_surfaces_at_the_very_next_write(run, scratch, backend):
    path = scratch / "f"
    path.write_bytes(b"")

    async def body():
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RO)
        stream = make_file_output_stream(f, NO_PREALLOC)  # write_behind 4
        await stream.write(bytes(131072))
        await ioengine.get_reactor().drain()  # the write has failed (EBADF) ...
        for _ in range(3):
            await asyncio.sleep(0)  # ... and its task has finished
        try:
            with pytest.raises(OSError):
                await stream.write(b"x")  # the next call
        finally:
            with pytest.raises(OSError):
                await stream.close()

    run(body())


def test_enospc_surfaces_and_stream_refuses(run, small_tmpfs):
    """A full filesystem (1 MiB tmpfs, 2 MiB written): ENOSPC surfaces at a write/flush/close, every
    later call raises too, and close() raises and closes the file."""
    path = small_tmpfs / "f"
    data = payload(1, 2 << 20)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, NO_PREALLOC)
        calls = [("write", lambda k=k: stream.write(data[k:k + 100_000])) for k in range(0, len(data), 100_000)]
        calls += [("flush", stream.flush), ("write", lambda: stream.write(b"more")), ("close", stream.close)]
        outcome = await calls_after_failure(stream, calls)
        assert_refuses_after_first_error(outcome, f)
        assert all(e.errno == errno.ENOSPC for _, e in outcome if e is not None), outcome

    run(body())
    # (No check of what reached the disk: write-behind writes run in parallel, so on a full
    # filesystem a later block may land while an earlier one fails.)


def test_short_write_is_not_silent(run, small_tmpfs):
    """1.5 MiB in 768 KiB buffers on a 1 MiB tmpfs: the second write lands only 256 KiB. Either an
    error is raised (by close at the latest) or the file holds all the data."""
    path = small_tmpfs / "f"
    data = payload(2, 1536 * 1024)

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=768 * 1024, preallocation_size=0))
        try:
            await stream.write(data)
        except OSError:
            pass
        try:
            await stream.close()
        except OSError:
            return True
        return False

    raised = run(body())
    got = read_os(path)
    assert raised or got == data, f"close() succeeded but the file holds {len(got)} of {len(data)} bytes"


@pytest.mark.parametrize("where", ["read-only-fd", "full-tmpfs"])
def test_preallocation_failure_loses_nothing_silently(run, scratch, request, where):
    """Either no call fails and the content is exact, or after the first failure every call fails."""
    if where == "full-tmpfs":
        directory = request.getfixturevalue("small_tmpfs")
        path = directory / "f"
        flags = CREATE
        opts = FileOutputStreamOptions(preallocation_size=2 << 20)  # more than the tmpfs holds
    else:
        path = scratch / "f"
        path.write_bytes(b"")
        flags = ioengine.OpenFlags.RO
        opts = FileOutputStreamOptions(preallocation_size=1 << 20)
    data = payload(3, 131072 + 100)

    async def body():
        f = await ioengine.open_file_dma(path, flags)
        stream = make_file_output_stream(f, opts)
        outcome = await calls_after_failure(stream, [
            ("write", lambda: stream.write(data[:131072])),
            ("write", lambda: stream.write(data[131072:])),
            ("flush", stream.flush),
            ("close", stream.close),
        ])
        if all(e is None for _, e in outcome):
            assert read_os(path) == data
        else:
            assert_refuses_after_first_error(outcome, f)

    run(body())


def test_cancelled_write_leaves_no_hole(run, scratch):
    path = scratch / "f"
    a, b, c = b"a" * 4096, b"b" * 4096, b"c" * 4096

    async def body():
        f = await ioengine.open_file_dma(path, CREATE)
        stream = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=4096, write_behind=1,
                                                                    preallocation_size=0))
        await stream.write(a)  # issued: the write-behind queue is now full
        writer = asyncio.get_running_loop().create_task(stream.write(b))  # waits for room
        await asyncio.sleep(0)
        if writer.cancel():  # still waiting for room (the first write may already have landed)
            with pytest.raises(asyncio.CancelledError):
                await writer
        try:
            await stream.write(c)
            await stream.close()
        except OSError:
            return True  # refusing after the cancellation is acceptable too
        return False

    refused = run(body())
    got = read_os(path)
    assert refused or got in (a + b + c, a + c), \
        f"close() succeeded with blocks {[got[i:i + 1] for i in range(0, len(got), 4096)]}"


def test_many_cancelled_writes_keep_the_stream_exact(run, scratch):
    """Writers cancelled at random moments (mostly while waiting for room in the write-behind
    window): a cancelled write() either stored its data or not at all; the stream keeps going
    and the file holds exactly what was accepted, in order."""
    import random

    path = scratch / "f"

    async def body():
        rnd = random.Random(9)
        f = await ioengine.open_file_dma(path, CREATE)
        out = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=16384, write_behind=2,
                                                                 preallocation_size=0))
        expected = bytearray()
        cancelled = 0
        for i in range(400):
            chunk = bytes([i % 251]) * rnd.choice([100, 4096, 16384, 20000])
            before = out._pos + out._fill
            t = asyncio.ensure_future(out.write(chunk))
            for _ in range(rnd.randrange(3)):
                await asyncio.sleep(0)
            if rnd.random() < 0.3 and t.cancel():
                try:
                    await t
                    expected += chunk
                except asyncio.CancelledError:
                    cancelled += 1
                    # What a cancelled write() stored stays stored: account for it.
                    stored = out._pos + out._fill - before
                    expected += chunk[:stored]
            else:
                await t
                expected += chunk
        await out.close()
        assert cancelled > 10
        return bytes(expected)

    expected = run(body())
    assert read_os(path) == expected
