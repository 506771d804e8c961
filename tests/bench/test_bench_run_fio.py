"""run_fio / fio_version against the installed fio, and the error when fio is missing."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from ioengine.bench.fio_json import (
    FioError,
    FioJobError,
    FioNotFoundError,
    FioOutputError,
    fio_version,
    run_fio,
)

needs_fio = pytest.mark.skipif(shutil.which("fio") is None,
                               reason="fio is not installed (apt install fio)")


def test_missing_fio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FioNotFoundError, match=r"not found on PATH\. Install the `fio` package"):
        run_fio(["--name=x", "--size=1m"])
    assert fio_version() is None
    assert issubclass(FioNotFoundError, FioError) and issubclass(FioError, RuntimeError)


def test_output_options_are_checked() -> None:
    with pytest.raises(ValueError, match="json or json\\+"):
        run_fio(["--output-format=normal", "--name=x"])
    with pytest.raises(ValueError, match="--output=FILE"):
        run_fio(["--output=/tmp/x.json", "--name=x"])


@needs_fio
def test_fio_version() -> None:
    version = fio_version()
    assert version is not None and version.startswith("fio-")


def supports_o_direct(directory: Path) -> bool:
    # Older kernels' tmpfs refuses O_DIRECT; fall back to buffered I/O there.
    try:
        fd = os.open(directory / "o_direct_probe", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
    except OSError:
        return False
    os.close(fd)
    return True


@needs_fio
def test_run_fio_one_second_randread(tmp_path: Path) -> None:
    target = tmp_path / "fio-data"
    direct = int(supports_o_direct(tmp_path))
    started = time.monotonic()
    result = run_fio(
        ["--name=rr", f"--filename={target}", "--size=4m", "--rw=randread", "--bs=4k",
         f"--direct={direct}", "--ioengine=psync", "--runtime=1", "--time_based"],
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 0 and result.command is not None
    assert "--output-format=json" in result.command
    assert result.version == fio_version()
    job = result.jobs[0]
    assert job.name == "rr" and job.error == 0
    read = result.total("read")
    assert read.total_ios > 0 and job.write.total_ios == 0
    assert read.iops == pytest.approx(read.total_ios * 1000 / read.runtime_ms, rel=1e-3)
    assert read.io_bytes == read.total_ios * 4096
    assert read.clat_ns.p50 <= read.clat_ns.p99
    assert job.usr_cpu + job.sys_cpu > 0
    assert result.cpu_us_per_io() is not None


@needs_fio
def test_run_fio_json_plus_kept() -> None:
    result = run_fio(["--output-format=json+", "--name=n", "--ioengine=null", "--size=1m"],
                     timeout=60)
    assert result.command is not None and "--output-format=json" not in result.command
    assert result.jobs[0].read.clat_ns.bins


@needs_fio
def test_run_fio_not_json_quotes_stderr() -> None:
    with pytest.raises(FioOutputError) as info:
        run_fio(["--name=x", "--no-such-option=1"], timeout=60)
    msg = str(info.value)
    assert "exited with status" in msg
    assert "no-such-option" in msg  # fio's complaint, quoted from its stderr


@needs_fio
def test_run_fio_job_error(tmp_path: Path) -> None:
    # A directory where fio expects a file: fio reports errno 21 (EISDIR) for the job.
    args = ["--name=dirjob", f"--filename={tmp_path}", "--size=1m", "--rw=read"]
    with pytest.raises(FioJobError, match=r"'dirjob' failed with error 21 \(EISDIR") as info:
        run_fio(args, timeout=60)
    assert info.value.errno == 21 and info.value.job_name == "dirjob"
    assert "Is a directory" in str(info.value)  # fio's own stderr line is quoted
    result = run_fio(args, timeout=60, check=False)
    assert result.failed_jobs() == [("dirjob", 21)] and result.returncode != 0


@needs_fio
def test_run_fio_timeout_kills_fio() -> None:
    started = time.monotonic()
    with pytest.raises(FioError, match="did not finish within 0.5 s"):
        run_fio(["--name=slow", "--ioengine=null", "--size=1g", "--runtime=30", "--time_based",
                 "--numjobs=2"], timeout=0.5)
    assert time.monotonic() - started < 10
