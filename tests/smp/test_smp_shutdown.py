"""Shutdown and failure: signals stop every shard; a dead shard ends the run; no orphans."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_smp_messages import _children

import ioengine
from ioengine import smp

CLI = Path(__file__).with_name("smp_cli.py")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone too (its parent has not reaped it yet)
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return False


def _start(mode: str, d: Path) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, str(CLI), mode, str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)  # its own process group, as in a terminal
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"the smp program did not start: {line!r} {out!r} {err!r}")
    return p, int(line.split()[1])


@pytest.mark.parametrize("sig, status, group", [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, False),
                                               (signal.SIGINT, 130, True), (signal.SIGTERM, 143, True)],
                         ids=["SIGINT", "SIGTERM", "SIGINT-to-group", "SIGTERM-to-group"])
def test_a_signal_stops_every_shard_and_closes_their_files(scratch, sig, status, group):
    """To shard 0 alone, or to the whole process group (a terminal's Ctrl-C): the same clean stop."""
    p, pid1 = _start("sigint" if sig == signal.SIGINT else "sigterm", scratch)
    if group:
        os.killpg(p.pid, sig)
    else:
        p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("the smp program did not stop on the signal")
    assert p.returncode == status, err
    assert "Traceback" not in err, err
    assert (scratch / "zero.marker").read_text() == "closed"
    assert (scratch / "one.marker").read_text() == "closed"  # shard 1's call was cancelled, its file closed
    assert _wait_gone(pid1)


def test_main_raising_stops_the_shards_and_raises(scratch):
    p, pid1 = _start("raise", scratch)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    assert "RuntimeError: main gave up" in err
    assert err.count("Traceback") == 1, err  # shard 0's, nothing from shard 1
    assert (scratch / "one.marker").read_text() == "closed"
    assert _wait_gone(pid1)


def test_a_shard_killed_with_sigkill_ends_the_run_with_an_error_and_no_orphans():
    async def main():
        import asyncio

        pid1 = await smp.submit_to(1, os.getpid)
        pending = smp.submit_to(1, asyncio.sleep, 30)
        os.kill(pid1, signal.SIGKILL)
        try:
            await pending  # the call to the dead shard fails at once
        finally:
            await asyncio.sleep(30)  # and main is cancelled: the run ends

    t = time.monotonic()
    with pytest.raises(smp.ShardError, match=r"shard 1: \(pid \d+\) was killed by SIGKILL") as info:
        ioengine.run(main, smp=2)
    assert info.value.shard == 1
    assert time.monotonic() - t < 25  # not waiting out main's sleep (a hang guard, not a timing claim)
    assert not [c for c in _children() if "resource_tracker" not in c[1]]


def test_a_shard_that_cannot_start_ends_the_run_with_its_traceback(tmp_path):
    # Shard 1 fails in its start-up: the file descriptor of its rings is not what it expects.
    script = tmp_path / "bad_start.py"
    script.write_text(
        "import ioengine, ioengine.smp._transport as t\n"
        "async def main():\n    return 1\n"
        "if __name__ == '__main__':\n"
        "    ioengine.run(main, smp=2)\n"
        "else:\n"
        "    def broken(*a, **k):\n        raise OSError('no rings for this shard')\n"
        "    t.Transport.__init__ = broken\n")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(Path(ioengine.__file__).parents[1])})
    assert p.returncode == 1
    assert "ShardError: shard 1: (pid" in p.stderr and "exited with status 1" in p.stderr
    assert "OSError: no rings for this shard" in p.stderr  # shard 1's own traceback, quoted


def test_parent_killed_leaves_no_shard_behind(scratch):
    p, pid1 = _start("sigint", scratch)
    p.kill()  # no chance to stop anything: the shards must die with it
    p.wait()
    p.stdout.close()  # not communicate(): a shard that survived would hold the pipes open
    p.stderr.close()
    assert _wait_gone(pid1)
