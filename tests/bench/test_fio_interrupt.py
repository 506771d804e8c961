"""Ctrl-C while fio runs stops fio too (it would otherwise run to the end of its runtime)."""
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from ioengine.bench.fio_json import run_fio

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")


def _fio_running(name: str) -> bool:
    out = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True).stdout
    return bool(out.strip())


def test_keyboard_interrupt_stops_fio():
    scratch = Path(__file__).resolve().parents[2] / ".scratch"
    scratch.mkdir(exist_ok=True)
    name = f"ioengine-interrupt-{uuid.uuid4().hex[:8]}"
    path = scratch / f"{name}.dat"

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            run_fio([f"--name={name}", f"--filename={path}", "--size=8m", "--rw=randread", "--bs=4k",
                     "--time_based", "--runtime=60", "--ioengine=psync"], timeout=120)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    deadline = time.monotonic() + 10
    while _fio_running(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not _fio_running(name), "fio kept running after the KeyboardInterrupt"
    finally:
        if path.exists():
            os.unlink(path)
