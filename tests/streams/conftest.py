"""Fixtures of the streams suite.

Every test that takes ``run`` runs once per backend (io_uring, linux-aio, threads); ``run_default``
runs on the default backend. Coroutines go through ``ioengine.run`` (no pytest-asyncio), so each
test gets a fresh asyncio loop and a fresh reactor. Files are real files opened with O_DIRECT in a
scratch directory on the local disk (``<repo>/.scratch``, git-ignored), never tmpfs -- except
``small_tmpfs``, a 1 MiB tmpfs mounted for the tests that need a full filesystem (skipped when
mounting is not allowed).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import ioengine

BACKENDS = ("io_uring", "linux-aio", "threads")
REPO = Path(__file__).resolve().parents[2]
SCRATCH = REPO / ".scratch"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def run(backend: str):
    """``run(coro)`` on a fresh loop + reactor of this test's backend (checked)."""

    def _run(coro, **options):
        async def checked():
            name = ioengine.get_reactor().backend.name
            assert name == backend, f"asked for backend {backend!r}, the reactor runs {name!r}"
            return await coro

        return ioengine.run(checked(), backend=backend, **options)

    return _run


@pytest.fixture
def run_default():
    """``run_default(coro)`` on a fresh loop + reactor of the default backend."""

    def _run(coro, **options):
        return ioengine.run(coro, **options)

    return _run


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Path:
    """A fresh directory on the local disk (not tmpfs), removed afterwards."""
    SCRATCH.mkdir(exist_ok=True)
    name = "streams-" + request.node.name.replace("/", "_")[:60] + "-"
    d = Path(tempfile.mkdtemp(prefix=name, dir=SCRATCH))
    yield d
    shutil.rmtree(d, ignore_errors=True)


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
