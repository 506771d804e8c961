"""Background stream I/O that fails reports its error once, to the caller, and nowhere else
(issue 15, item 6): asyncio must log nothing ("Future exception was never retrieved"), through a
loop exception handler and its logger. Every test runs on every backend with O_DIRECT files; the
ENOSPC case needs root (a small loop-mounted ext4) and is skipped with the reason otherwise."""
from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import subprocess

import pytest

import ioengine
from ioengine.fstream import (
    FileInputStreamOptions,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)

from streams_util import CREATE, payload, write_os

KIB = 1024


class _AsyncioReports(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.records.append(record.getMessage())


@pytest.fixture
def asyncio_reports():
    """Everything asyncio's logger reports at ERROR while the test runs (after a final gc)."""
    handler = _AsyncioReports()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def _watch(reports: list) -> None:
    """Route the running loop's exception reports into ``reports`` too."""
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reports.append(ctx.get("message")))


async def _settle() -> None:
    gc.collect()  # "never retrieved" is reported when the future is collected
    await asyncio.sleep(0)


def test_failed_background_writes_are_retrieved(run, scratch, asyncio_reports):
    """Writes to an O_RDONLY descriptor fail (EBADF) in the background, several at once: the
    caller gets the error, asyncio reports nothing."""
    path = scratch / "ro"
    path.write_bytes(b"")
    reports: list = []

    async def body():
        _watch(reports)
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.RO)
        opts = FileOutputStreamOptions(buffer_size=64 * KIB, write_behind=4, preallocation_size=0)
        stream = make_file_output_stream(f, opts)
        errors = []
        try:
            for _ in range(12):
                await stream.write(bytes(64 * KIB))
            await stream.flush()
        except OSError as e:
            errors.append(e)
        try:
            await stream.close()
        except OSError as e:
            errors.append(e)
        del stream, f
        await _settle()
        return errors

    errors = run(body())
    gc.collect()
    assert errors and all(e.errno == errno.EBADF for e in errors), errors
    assert reports == [] and asyncio_reports == [], (reports, asyncio_reports)


def test_failed_read_aheads_are_retrieved(run, scratch, asyncio_reports):
    """Read-aheads on an O_WRONLY descriptor fail (EBADF): the first read raises; close() drops
    the others, already failed, without asyncio reporting them (a guard: cancel() of a finished
    future marks its error as seen)."""
    path = scratch / "wo"
    write_os(path, payload(1, 1 << 20))
    reports: list = []

    async def body():
        _watch(reports)
        f = await ioengine.open_file_dma(path, ioengine.OpenFlags.WO)
        stream = make_file_input_stream(f, 0, None, FileInputStreamOptions(buffer_size=64 * KIB, read_ahead=4))
        with pytest.raises(OSError) as ei:
            await stream.read()
        for _ in range(5):
            await asyncio.sleep(0)  # let the other read-aheads fail too
        await stream.skip(64 * KIB)  # drops one
        await stream.close()  # drops the rest
        await f.close()
        del stream, f
        await _settle()
        return ei.value

    err = run(body())
    gc.collect()
    assert err.errno == errno.EBADF
    assert reports == [] and asyncio_reports == [], (reports, asyncio_reports)


@pytest.fixture
def small_ext4(scratch):
    """A 16 MiB ext4 image loop-mounted under the scratch directory (needs root); cleaned up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop ext4 needs root")
    img, mnt = scratch / "ext4.img", scratch / "ext4"
    mnt.mkdir()
    try:
        with open(img, "wb") as fh:
            fh.truncate(16 << 20)
        r = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            pytest.skip(f"mkfs.ext4 failed: {r.stderr.strip()}")
        r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot make a loop-mounted ext4: {e}")
    if r.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=60)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)


def test_enospc_in_background_writes_is_retrieved(run, small_ext4, asyncio_reports):
    """Filling a 16 MiB ext4 through a stream: ENOSPC reaches the caller, asyncio reports nothing."""
    path = small_ext4 / "fill"
    reports: list = []

    async def body():
        _watch(reports)
        f = await ioengine.open_file_dma(path, CREATE)
        opts = FileOutputStreamOptions(buffer_size=128 * KIB, write_behind=4, preallocation_size=0)
        stream = make_file_output_stream(f, opts)
        errors = []
        try:
            for _ in range(32 << 20 >> 17):  # 32 MiB: twice the filesystem
                await stream.write(bytes(128 * KIB))
            await stream.flush()
        except OSError as e:
            errors.append(e)
        try:
            await stream.close()
        except OSError as e:
            errors.append(e)
        assert f.closed
        del stream, f
        await _settle()
        return errors

    errors = run(body())
    gc.collect()
    assert errors and errors[0].errno == errno.ENOSPC, errors
    assert reports == [] and asyncio_reports == [], (reports, asyncio_reports)
    os.unlink(path)
