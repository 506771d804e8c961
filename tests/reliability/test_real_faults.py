"""Real faults (need root; skipped with the reason otherwise), on every backend:

- ENOSPC: a 32 MiB loop-mounted ext4 filled through dma_write and through an output stream.
  The error reaches the caller, the reactor keeps running, and what was acknowledged before
  (dma_write's returned count; the stream's last successful flush) is intact after a remount.
- EIO: a loop device shrunk under its mounted ext4 (``losetup -c``; this kernel has no
  device-mapper): reads and writes past the new end fail with EIO, to their caller only.
- SIGKILL: a child writes numbered records (dma_write + flush, or output stream + flush) and
  acknowledges each flushed one on a pipe; it is killed at a random point (fixed seed); every
  acknowledged record must be on disk, intact.

Everything mounted or attached is unmounted / detached in ``finally``.
"""
from __future__ import annotations

import asyncio
import errno
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

import ioengine
from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream

from reliability_util import settle, watch_loop

REPO = Path(__file__).resolve().parents[2]
O = ioengine.OpenFlags
MIB = 1 << 20

pytestmark = pytest.mark.root  # mount, losetup: skipped otherwise (tests/conftest.py)


@pytest.fixture
def loop_kind() -> str:
    """asyncio's loop only: the faults here are the kernel's, the loop adds nothing but time."""
    return "asyncio"


def sh(*cmd: str, timeout: float = 30) -> str:
    """Run a command; skip the test (with what failed) if it cannot run."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"{' '.join(cmd)}: {e}")
    if res.returncode != 0:
        pytest.skip(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[:300]}")
    return res.stdout.strip()


def quiet(*cmd: str) -> None:
    """Clean-up: run, never raise."""
    try:
        subprocess.run(cmd, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pass


def pattern(tag: int, n: int) -> bytes:
    unit = tag.to_bytes(8, "little") + b"ioengine"
    return unit * (n // len(unit))


@pytest.fixture
def small_ext4(scratch):
    """(image, mountpoint) of a 32 MiB ext4 mounted through a loop device."""
    img, mnt = scratch / "fs.img", scratch / "mnt"
    mnt.mkdir()
    sh("truncate", "-s", "32M", str(img))
    sh("mkfs.ext4", "-q", "-F", str(img))
    sh("mount", "-o", "loop", str(img), str(mnt))
    try:
        yield img, mnt
    finally:
        quiet("umount", str(mnt))
        quiet("umount", "-l", str(mnt))


def remount(img: Path, mnt: Path) -> None:
    sh("umount", str(mnt))
    sh("mount", "-o", "loop", str(img), str(mnt))


# -- ENOSPC ---------------------------------------------------------------------------------


def test_enospc_dma_write(run, small_ext4, reports):
    img, mnt = small_ext4
    path = mnt / "fill.dat"
    acked: list[tuple[int, int]] = []  # (position, bytes) acknowledged

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(path, O.RW | O.CREATE | O.TRUNCATE)
        buf = f.allocate_buffer(MIB)
        pos = 0
        with pytest.raises(OSError) as ei:
            for i in range(64):  # 64 MiB: more than the filesystem holds
                buf[:] = pattern(i, MIB)
                got = await f.dma_write(pos, buf)
                acked.append((pos, got))
                pos += got
        assert ei.value.errno == errno.ENOSPC, ei.value
        assert "dma_write" in str(ei.value) and ei.value.filename == str(path)
        assert 0 < pos < 32 * MIB
        # the reactor keeps running: the data acknowledged reads back now
        b = f.allocate_buffer(MIB)
        assert await f.dma_read(0, b) == MIB and bytes(b) == pattern(0, MIB)
        await f.close()
        await settle()
        assert ioengine.get_reactor().inflight == 0

    run(body())
    assert reports == []
    remount(img, mnt)
    with open(path, "rb") as g:
        for i, (pos, got) in enumerate(acked):
            assert os.pread(g.fileno(), got, pos) == pattern(i, MIB)[:got], f"acknowledged MiB {i} lost"


def test_enospc_output_stream(run, small_ext4, reports):
    img, mnt = small_ext4
    path = mnt / "stream.dat"
    state = {"flushed": 0}
    rng = random.Random(5)
    data = rng.randbytes(48 * MIB)

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(path, O.RW | O.CREATE | O.TRUNCATE)
        s = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=128 * 1024, write_behind=4))
        pos = 0
        with pytest.raises(OSError) as ei:
            while pos < len(data):
                n = rng.randint(1, 300_000)
                await s.write(data[pos:pos + n])
                pos += n
                if rng.random() < 0.2:
                    await s.flush()
                    state["flushed"] = pos
        assert ei.value.errno == errno.ENOSPC, ei.value
        assert str(path) in str(ei.value)
        with pytest.raises(OSError):
            await s.close()  # refused: the stream failed; the file is closed all the same
        assert f.closed
        g = await ioengine.open_file_dma(path, O.RO)  # the reactor keeps running
        b = g.allocate_buffer(4096)
        assert await g.dma_read(0, b) == 4096 and bytes(b) == data[:4096]
        await g.close()
        await settle()
        assert ioengine.get_reactor().inflight == 0

    run(body())
    assert reports == []
    assert state["flushed"] > 0
    remount(img, mnt)
    with open(path, "rb") as g:
        assert g.read(state["flushed"]) == data[:state["flushed"]], "flushed stream data lost"


# -- EIO --------------------------------------------------------------------------------------


@pytest.fixture
def shrinking_loop(scratch):
    """(image, loop device, mountpoint) of a 64 MiB ext4 on an explicit loop device."""
    img, mnt = scratch / "dev.img", scratch / "mnt"
    mnt.mkdir()
    sh("truncate", "-s", "64M", str(img))
    dev = sh("losetup", "-f", "--show", str(img))
    try:
        sh("mkfs.ext4", "-q", "-F", dev)
        sh("mount", dev, str(mnt))
        try:
            yield img, dev, mnt
        finally:
            quiet("umount", str(mnt))
            quiet("umount", "-l", str(mnt))
    finally:
        quiet("losetup", "-d", dev)


def test_eio_from_a_shrunk_device(run, shrinking_loop, reports):
    img, dev, mnt = shrinking_loop
    path = mnt / "victim.dat"
    with open(path, "wb") as g:
        for i in range(40):
            g.write(pattern(i, MIB))
        g.flush()
        os.fsync(g.fileno())
    sh("sync")
    sh("truncate", "-s", "8M", str(img))
    sh("losetup", "-c", dev)
    sh("blockdev", "--flushbufs", dev)
    outcome = {}

    async def body():
        watch_loop(reports)
        f = await ioengine.open_file_dma(path, O.RW)
        bufs = [f.allocate_buffer(MIB) for _ in range(40)]
        res = await asyncio.gather(*(f.dma_read(i * MIB, bufs[i]) for i in range(40)), return_exceptions=True)
        errs = [r for r in res if isinstance(r, BaseException)]
        assert errs, "no read failed: the file's blocks all lie below the new end?"
        for e in errs:
            assert isinstance(e, OSError) and e.errno == errno.EIO, e
            assert "dma_read" in str(e) and e.filename == str(path)
        for i, r in enumerate(res):
            if not isinstance(r, BaseException):
                assert r == MIB and bytes(bufs[i]) == pattern(i, MIB)  # below the end: intact
        bad = [i for i, r in enumerate(res) if isinstance(r, BaseException)]
        w = f.allocate_buffer(MIB)
        w[:] = pattern(99, MIB)
        with pytest.raises(OSError) as ei:
            await f.dma_write(bad[-1] * MIB, w)
        assert ei.value.errno == errno.EIO and ei.value.filename == str(path)
        outcome["failed"] = len(bad)
        try:
            await f.close()
        except OSError:
            pass
        # the reactor keeps running: a file elsewhere reads fine
        g = await ioengine.open_file_dma(REPO / "README.md", O.RO)
        b = g.allocate_buffer(4096)
        assert await g.dma_read(0, b) > 0
        await g.close()
        await settle()
        assert ioengine.get_reactor().inflight == 0

    run(body())
    assert reports == []
    assert outcome["failed"] > 0


# -- SIGKILL ----------------------------------------------------------------------------------

RECORD = 4096

CHILD = textwrap.dedent("""
    import os, sys, zlib
    import ioengine
    from ioengine.fstream import FileOutputStreamOptions, make_file_output_stream
    path, mode, backend = sys.argv[1], sys.argv[2], sys.argv[3]
    RECORD = 4096

    def record(seq):
        body = (seq.to_bytes(8, "little") + os.urandom(8)) * ((RECORD - 16) // 16)
        body = body[:RECORD - 16]
        return seq.to_bytes(8, "little") + zlib.crc32(body).to_bytes(8, "little") + body

    def ack(seq):
        os.write(1, b"%d\\n" % seq)

    async def main():
        O = ioengine.OpenFlags
        f = await ioengine.open_file_dma(path, O.RW | O.CREATE | O.TRUNCATE)
        if mode == "dma":
            buf = f.allocate_buffer(RECORD)
            for seq in range(100000):
                buf[:] = record(seq)
                await f.dma_write(seq * RECORD, buf)
                await f.flush()
                ack(seq)
        else:
            s = make_file_output_stream(f, FileOutputStreamOptions(buffer_size=16384, write_behind=2))
            for seq in range(100000):
                await s.write(record(seq))
                if seq % 3 == 2:
                    await s.flush()
                    for k in range(seq - 2, seq + 1):
                        ack(k)

    ioengine.run(main(), backend=backend)
""")


def _check_records(path: Path, acked: int) -> None:
    with open(path, "rb") as g:
        for seq in range(acked):
            rec = os.pread(g.fileno(), RECORD, seq * RECORD)
            assert len(rec) == RECORD, f"acknowledged record {seq} missing ({len(rec)} bytes)"
            assert int.from_bytes(rec[:8], "little") == seq, f"record {seq}: wrong sequence number"
            assert int.from_bytes(rec[8:16], "little") == zlib.crc32(rec[16:]), f"record {seq} torn"


@pytest.mark.parametrize("mode", ["dma", "stream"])
def test_sigkill_loses_no_acknowledged_record(backend, scratch, mode):
    rng = random.Random(f"{backend}-{mode}")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for rnd in range(5):
        path = scratch / f"log-{rnd}.dat"
        want = rng.randint(1, 60)  # kill after this many acknowledgements, plus a random delay
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode, backend], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        acked = -1
        buf = b""
        try:
            while acked + 1 < want:
                r, _, _ = select.select([p.stdout], [], [], 60)
                assert r, "the child stopped acknowledging"
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    pytest.fail(f"the child exited early: {p.wait()} {p.stderr.read().decode()[-2000:]}")
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for ln in lines:
                    assert int(ln) == acked + 1, "acknowledgements out of order"
                    acked = int(ln)
            select.select([], [], [], rng.random() * 0.005)  # a random point in the next record
            p.send_signal(signal.SIGKILL)
            p.wait()
            # acknowledgements still in the pipe when it died count too
            buf += p.stdout.read()
            for ln in buf.split(b"\n"):
                if ln:
                    assert int(ln) == acked + 1, "acknowledgements out of order"
                    acked = int(ln)
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()
        assert p.returncode == -signal.SIGKILL
        _check_records(path, acked + 1)
