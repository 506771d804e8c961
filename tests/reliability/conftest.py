"""Fixtures of the reliability suite.

``reports`` collects everything asyncio reports while a test runs: records of the "asyncio" logger
at ERROR ("Future exception was never retrieved", "Task exception was never retrieved", …) and,
once ``reliability_util.watch_loop(reports)`` has run inside the test's coroutine, the loop's
exception-handler calls.
"""
from __future__ import annotations

import gc
import logging

import pytest


class _Reports(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.records.append(record.getMessage())


@pytest.fixture
def reports():
    handler = _Reports()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        gc.collect()  # "never retrieved" is reported when the future is collected
        logger.removeHandler(handler)
