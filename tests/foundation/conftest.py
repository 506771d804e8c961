"""Fixtures of the foundation suite: every test that takes ``run`` runs once per backend.

Tests open real files with O_DIRECT in a scratch directory on the local disk
(``<repo>/.scratch``, git-ignored): tmpfs would not exercise direct I/O the same way.
Coroutines run through ``ioengine.run(coro, backend=...)`` (no pytest-asyncio), so each test
gets a fresh asyncio loop and a fresh reactor on the requested backend.
"""
from __future__ import annotations

import shutil
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
    """``run(coro, **reactor_options)``: run a coroutine on a fresh loop + reactor of this backend,
    and check that the reactor it ran on is the one asked for."""

    def _run(coro, **options):
        async def checked():
            name = ioengine.get_reactor().backend.name
            assert name == backend, f"asked for backend {backend!r}, the reactor runs {name!r}"
            return await coro

        return ioengine.run(checked(), backend=backend, **options)

    return _run


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Path:
    """A fresh directory on the local disk (not tmpfs), removed afterwards."""
    SCRATCH.mkdir(exist_ok=True)
    name = "foundation-" + request.node.name.replace("/", "_")[:60] + "-"
    d = Path(tempfile.mkdtemp(prefix=name, dir=SCRATCH))
    yield d
    shutil.rmtree(d, ignore_errors=True)
