"""Fixtures shared by the suites that do real I/O.

``run`` runs a coroutine once per backend (io_uring, linux-aio, threads) through
``ioengine.run`` (no pytest-asyncio): each test gets a fresh asyncio loop and a fresh reactor,
checked to be the backend asked for. ``scratch`` is a fresh directory on the local disk
(``<repo>/.scratch``, git-ignored; not tmpfs, which would not exercise direct I/O the same way).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import ioengine

# A runner that starts the suite in the background (a non-interactive shell's `cmd &`) hands it
# SIGINT ignored, and every process a test starts inherits that: the tests that interrupt
# iotune or the shards with Ctrl-C would see it ignored, as it rightly is then. They test a
# terminal's Ctrl-C, so the suite takes Python's default handling back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class _NeverRetrieved(logging.Handler):
    """What asyncio logs about a future or task whose exception nobody retrieved: an error the
    engine lost. Logged when the object is freed, so it may surface in the next test; any test
    that sees one fails (the reliability suite's ``reports`` fixture looks closer)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "never retrieved" in msg:
            self.messages.append(msg)


_never_retrieved = _NeverRetrieved()
logging.getLogger("asyncio").addHandler(_never_retrieved)


@pytest.fixture(autouse=True)
def _no_exception_left_unretrieved() -> Iterator[None]:
    seen = len(_never_retrieved.messages)
    yield
    new = _never_retrieved.messages[seen:]
    if new:
        pytest.fail(f"asyncio logged {len(new)} unretrieved exception(s), e.g.: {new[0][:300]}")


#: Fixtures that bring a marker to every test using them: the need is the fixture's.
FIXTURE_MARKS = {
    "small_tmpfs": "root",  # mounts a tmpfs (tests/streams)
    "small_ext4": "root",  # loop-mounts an ext4 image (streams, reliability)
    "shrinking_loop": "root",  # a loop device shrunk under ext4 (reliability)
    "ext4_or_xfs": "real_disk",  # checks extents on the scratch directory's own filesystem
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_fio = shutil.which("fio") is None
    not_root = os.geteuid() != 0
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(mark)
        # Tests that skip themselves without fio are fio tests (files whose owners keep their
        # own skipif: they carry the marker too).
        if any(m.name == "skipif" and "fio is not installed" in str(m.kwargs.get("reason", ""))
               for m in item.iter_markers()):
            item.add_marker("fio")
        if no_fio and item.get_closest_marker("fio") is not None:
            item.add_marker(pytest.mark.skip(reason="fio is not installed (apt install fio)"))
        if not_root and item.get_closest_marker("root") is not None:
            item.add_marker(pytest.mark.skip(reason="needs root"))


BACKENDS = ("io_uring", "linux-aio", "threads")
SCRATCH = Path(__file__).resolve().parents[1] / ".scratch"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


#: The asyncio loops ioengine supports: the default one and uvloop (when installed).
LOOPS = ("asyncio", "uvloop")


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return request.param


@pytest.fixture
def run(backend: str, loop_kind: str):
    """``run(coro, **reactor_options)`` on a fresh loop (asyncio's or uvloop's) + reactor of this
    test's backend (both checked)."""

    def _run(coro, **options):
        async def checked():
            name = ioengine.get_reactor().backend.name
            assert name == backend, f"asked for backend {backend!r}, the reactor runs {name!r}"
            loop = type(asyncio.get_running_loop()).__module__
            assert loop.startswith("uvloop") == (loop_kind == "uvloop"), f"asked for {loop_kind}, runs {loop}"
            return await coro

        if loop_kind == "uvloop":
            import uvloop

            policy = asyncio.get_event_loop_policy()
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            try:
                return ioengine.run(checked(), backend=backend, **options)
            finally:
                asyncio.set_event_loop_policy(policy)
        return ioengine.run(checked(), backend=backend, **options)

    return _run


@pytest.fixture
def scratch(request: pytest.FixtureRequest) -> Path:
    """A fresh directory on the local disk, removed afterwards."""
    SCRATCH.mkdir(exist_ok=True)
    suite = request.node.path.parent.name
    name = f"{suite}-" + request.node.name.replace("/", "_")[:60] + "-"
    d = Path(tempfile.mkdtemp(prefix=name, dir=SCRATCH))
    yield d
    shutil.rmtree(d, ignore_errors=True)
