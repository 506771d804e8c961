"""Fixtures of the streams suite.

Every test that takes ``run`` runs once per backend (io_uring, linux-aio, threads); ``run_default``
runs on the default backend. Coroutines go through ``ioengine.run`` (no pytest-asyncio), so each
test gets a fresh asyncio loop and a fresh reactor. Files are real files opened with O_DIRECT in a
scratch directory on the local disk (``<repo>/.scratch``, git-ignored), never tmpfs -- except
``small_tmpfs``, a 1 MiB tmpfs mounted for the tests that need a full filesystem (skipped when
mounting is not allowed).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import ioengine


@pytest.fixture
def run_default():
    """``run_default(coro)`` on a fresh loop + reactor of the default backend."""

    def _run(coro, **options):
        return ioengine.run(coro, **options)

    return _run


@pytest.fixture
def small_tmpfs(scratch: Path) -> Path:
    """A 1 MiB tmpfs mounted under the scratch directory (needs root); unmounted afterwards."""
    mnt = scratch / "tmpfs"
    mnt.mkdir()
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs: {e}")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        r = subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)
