"""iotune with a bad --io-properties-file: one clear line naming the file and the problem, exit
status 2, no traceback, no "coroutine ... was never awaited" (issue 15, item 6)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "unclosed": (b"disks: [\n", "not valid YAML: line 2"),
    "not_utf8": (b"disks:\n  - mountpoint: /\xff\xfe\n", "not UTF-8"),
    "wrong_shape": (b"disks: 3\n", "expected 'disks:' to be a list"),
    "bad_value": (b"disks:\n  - mountpoint: /\n    read_iops: lots\n    read_bandwidth: 1G\n"
                  b"    write_iops: 1\n    write_bandwidth: 1G\n", "read_iops"),
}


def _iotune(scratch: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="default")  # a "never awaited" warning would show
    return subprocess.run([sys.executable, "-m", "ioengine.tools.iotune", "--evaluation-directory", str(scratch), *argv,
                           "--fs-check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_io_properties_file_is_one_line(scratch, case):
    content, needle = CASES[case]
    path = scratch / f"{case}.yaml"
    path.write_bytes(content)
    r = _iotune(scratch, "--io-properties-file", str(path))
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("iotune: error:") and str(path) in err and needle in err, err
    assert "Traceback" not in err and "never awaited" not in err


def test_missing_io_properties_file(scratch):
    path = scratch / "absent.yaml"
    r = _iotune(scratch, "--io-properties-file", str(path))
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert str(path) in err and "No such file" in err, err
